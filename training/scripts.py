"""The writing systems the caption synthesis writes in: words and the installed fonts that cover them.

Real memes are captioned in every script (the shared data: English, Hindi,
Indonesian, Polish, Chinese, Japanese; issue 26: Korean, Telugu, Arabic...),
so ``training.synth`` draws each caption or designed-text picture in a script
drawn by ``SCRIPT_SHARES``. Fonts come only from Debian packages, never
fetched: matplotlib's DejaVu and ``fonts-liberation2`` for Latin, Cyrillic and
Greek; ``fonts-noto-cjk`` for Chinese (simplified, traditional), Japanese and
Korean (one collection file, a face per language); ``fonts-noto-core`` for
Devanagari, Bengali, Tamil, Telugu, Arabic and Thai. ``scripts/system-deps``
installs them. Pillow's raqm layout (bundled with its wheels) shapes Arabic
right to left and the Indic scripts' conjuncts. A script whose fonts are not
installed is left out, said once on stderr; Latin is always there.

A font is named by its file, with ``#N`` for face N of a collection
(``NotoSansCJK-Bold.ttc#2``: Simplified Chinese).
"""

from __future__ import annotations

import functools
import os
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NOTO = "/usr/share/fonts/truetype/noto"
NOTO_CJK = "/usr/share/fonts/opentype/noto"
CJK_FACE = {"ja": 0, "ko": 1, "zh-hans": 2, "zh-hant": 3}   # the faces of Debian's NotoSansCJK-*.ttc

# of the captions (and designed text): about half Latin, as real memes are, the rest over the world's scripts
SCRIPT_SHARES = {"latin": 0.40, "cyrillic": 0.07, "greek": 0.03, "zh-hans": 0.08, "zh-hant": 0.04, "ja": 0.07,
                 "ko": 0.05, "devanagari": 0.06, "bengali": 0.04, "tamil": 0.04, "telugu": 0.04, "arabic": 0.05,
                 "thai": 0.03}

WORDS = {
    "latin": ("when", "you", "me", "my", "code", "finally", "works", "nobody", "is", "this", "a", "bug", "feature",
              "monday", "boss", "friday", "deploy", "production", "tests", "pass", "one", "does", "not", "simply",
              "every", "time", "i", "try", "to", "sleep", "brain", "cat", "dog", "coffee", "why", "just", "wait",
              "for", "it", "expectation", "reality", "also", "them", "us", "how", "teacher", "homework", "internet",
              "kiedy", "ty", "ja", "znowu", "poniedziałek", "ketika", "kamu", "aku", "kerja", "cuando", "tú", "yo"),
    "cyrillic": ("когда", "ты", "я", "мой", "код", "наконец", "работает", "никто", "это", "баг", "фича",
                 "понедельник", "начальник", "пятница", "деплой", "прод", "тесты", "прошли", "просто", "каждый",
                 "раз", "пытаюсь", "спать", "кот", "кофе", "почему", "ждать", "ожидание", "реальность", "мы", "они",
                 "интернет"),
    "greek": ("όταν", "εσύ", "εγώ", "κώδικας", "επιτέλους", "δουλεύει", "κανείς", "αυτό", "είναι", "δευτέρα",
              "αφεντικό", "γάτα", "καφές", "γιατί", "περίμενε", "πραγματικότητα"),
    "zh-hans": ("当", "你", "我", "的", "代码", "终于", "能", "运行", "了", "没有人", "这", "是", "一个", "周一", "老板",
                "周五", "上线", "测试", "通过", "每次", "想", "睡觉", "猫", "狗", "咖啡", "为什么", "等等", "期望",
                "现实", "他们", "我们", "老师", "作业", "网络", "哈哈", "笑死", "太难了", "打工人", "真的", "不要",
                "学习", "考试", "妈妈"),
    "zh-hant": ("當", "你", "我", "的", "程式", "終於", "能", "執行", "了", "沒有人", "這", "是", "一個", "週一",
                "老闆", "週五", "上線", "測試", "通過", "每次", "想", "睡覺", "貓", "狗", "咖啡", "為什麼", "等等",
                "期望", "現實", "他們", "我們", "老師", "作業", "網路", "哈哈", "笑死", "太難了", "真的", "不要",
                "學習", "考試", "媽媽"),
    "ja": ("私", "あなた", "の", "コード", "やっと", "動いた", "誰も", "これ", "は", "バグ", "月曜日", "上司",
           "金曜日", "テスト", "毎回", "寝たい", "猫", "犬", "コーヒー", "なぜ", "待って", "期待", "現実", "彼ら",
           "先生", "宿題", "ネット", "草", "無理", "本当に", "する", "ない", "です", "よ", "ね", "仕事", "休み",
           "明日", "今日"),
    "ko": ("내가", "너", "나", "코드", "드디어", "작동", "아무도", "이것", "은", "버그", "월요일", "상사", "금요일",
           "테스트", "통과", "매번", "자고", "싶다", "고양이", "강아지", "커피", "왜", "기다려", "기대", "현실", "그들",
           "우리", "선생님", "숙제", "인터넷", "진짜", "오늘", "내일", "회사", "ㅋㅋㅋ"),
    "devanagari": ("जब", "तुम", "मैं", "मेरा", "कोड", "आखिरकार", "चलता", "है", "कोई", "नहीं", "यह", "एक", "सोमवार",
                   "बॉस", "शुक्रवार", "टेस्ट", "पास", "हर", "बार", "सोना", "बिल्ली", "कुत्ता", "चाय", "क्यों", "रुको",
                   "उम्मीद", "हकीकत", "वे", "हम", "टीचर", "होमवर्क", "इंटरनेट", "भाई", "दोस्त", "मम्मी", "पापा", "आज",
                   "कल"),
    "bengali": ("যখন", "তুমি", "আমি", "আমার", "কোড", "অবশেষে", "চলছে", "কেউ", "না", "এটা", "একটা", "সোমবার", "বস",
                "শুক্রবার", "পরীক্ষা", "প্রতিবার", "ঘুম", "বিড়াল", "কুকুর", "চা", "কেন", "অপেক্ষা", "আশা", "বাস্তবতা",
                "তারা", "আমরা", "শিক্ষক", "বাড়ির", "কাজ", "ভাই", "বন্ধু", "আজ", "কাল"),
    "tamil": ("எப்போது", "நீ", "நான்", "என்", "கோட்", "கடைசியாக", "வேலை", "செய்கிறது", "யாரும்", "இல்லை", "இது",
              "ஒரு", "திங்கள்", "முதலாளி", "வெள்ளி", "தேர்வு", "ஒவ்வொரு", "முறையும்", "தூக்கம்", "பூனை", "நாய்",
              "காபி", "ஏன்", "காத்திரு", "எதிர்பார்ப்பு", "உண்மை", "அவர்கள்", "நாங்கள்", "ஆசிரியர்", "நண்பா",
              "இன்று", "நாளை"),
    "telugu": ("ఎప్పుడు", "నువ్వు", "నేను", "నా", "కోడ్", "చివరికి", "పనిచేస్తుంది", "ఎవరూ", "లేదు", "ఇది", "ఒక",
               "సోమవారం", "బాస్", "శుక్రవారం", "పరీక్ష", "ప్రతిసారీ", "నిద్ర", "పిల్లి", "కుక్క", "కాఫీ", "ఎందుకు",
               "ఆగు", "ఆశ", "నిజం", "వాళ్ళు", "మేము", "టీచర్", "హోంవర్క్", "అన్న", "స్నేహితుడు", "ఈరోజు", "రేపు"),
    "arabic": ("عندما", "أنت", "أنا", "كودي", "أخيرا", "يعمل", "لا", "أحد", "هذا", "خطأ", "الاثنين", "المدير",
               "الجمعة", "اختبار", "نجح", "كل", "مرة", "أنام", "قطة", "كلب", "قهوة", "لماذا", "انتظر", "التوقع",
               "الواقع", "هم", "نحن", "المعلم", "واجب", "الإنترنت", "صديقي", "اليوم", "غدا"),
    "thai": ("เมื่อ", "คุณ", "ฉัน", "โค้ด", "ในที่สุด", "ทำงาน", "ไม่มีใคร", "นี่", "คือ", "บั๊ก", "วันจันทร์",
             "เจ้านาย",
             "วันศุกร์", "เทสต์", "ผ่าน", "ทุกครั้ง", "นอน", "แมว", "หมา", "กาแฟ", "ทำไม", "รอ", "ความคาดหวัง",
             "ความจริง", "พวกเขา", "พวกเรา", "ครู", "การบ้าน", "เน็ต", "วันนี้", "พรุ่งนี้"),
}
UNSPACED = {"zh-hans", "zh-hant", "ja"}   # words run together; a line may break between any two characters


@dataclass(frozen=True)
class Script:
    name: str
    words: tuple[str, ...]
    bold: tuple[str, ...]       # font files ("path" or "path#face")
    regular: tuple[str, ...]

    @property
    def spaced(self) -> bool:
        return self.name not in UNSPACED

    def phrase(self, rng: np.random.Generator, lo: int = 2, hi: int = 9) -> str:
        picked = (self.words[int(i)] for i in rng.integers(len(self.words), size=int(rng.integers(lo, hi + 1))))
        return (" " if self.spaced else "").join(picked)


def latin_fonts() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(bold, regular): matplotlib's DejaVu, plus Debian's Liberation fonts where installed."""
    import matplotlib

    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    bold = [ttf / "DejaVuSans-Bold.ttf", ttf / "DejaVuSerif-Bold.ttf", ttf / "DejaVuSansMono-Bold.ttf"]
    regular = [ttf / "DejaVuSans.ttf", ttf / "DejaVuSerif.ttf"]
    for folder in ("/usr/share/fonts/truetype/liberation2", "/usr/share/fonts/truetype/liberation"):
        if os.path.isdir(folder):
            bold += sorted(Path(folder).glob("LiberationSans*-Bold.ttf"))
            regular += sorted(Path(folder).glob("LiberationSans*-Regular.ttf"))
            break
    return tuple(map(str, bold)), tuple(map(str, regular))


NOTO_FILES = {"devanagari": "Devanagari", "bengali": "Bengali", "tamil": "Tamil", "telugu": "Telugu",
              "arabic": "Arabic", "thai": "Thai"}
PACKAGE = {**{s: "fonts-noto-core" for s in NOTO_FILES}, **{s: "fonts-noto-cjk" for s in CJK_FACE}}


def script_fonts(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(bold, regular) font files of a script, installed or not."""
    if name in ("latin", "cyrillic", "greek"):
        return latin_fonts()
    if name in CJK_FACE:
        face = CJK_FACE[name]
        return (f"{NOTO_CJK}/NotoSansCJK-Bold.ttc#{face}",), (f"{NOTO_CJK}/NotoSansCJK-Regular.ttc#{face}",)
    stem = f"{NOTO}/NotoSans{NOTO_FILES[name]}"
    return (f"{stem}-Bold.ttf",), (f"{stem}-Regular.ttf",)


def font_path(spec: str) -> tuple[str, int]:
    """(file, face index) of a font named ``path`` or ``path#face``."""
    path, _, face = spec.partition("#")
    return path, int(face or 0)


@functools.cache
def available_scripts() -> dict[str, Script]:
    """The scripts whose fonts are installed; the missing ones said once on stderr."""
    found, missing = {}, {}
    for name in SCRIPT_SHARES:
        bold, regular = script_fonts(name)
        if all(os.path.isfile(font_path(f)[0]) for f in (*bold, *regular)):
            found[name] = Script(name, WORDS[name], bold, regular)
        else:
            missing.setdefault(PACKAGE[name], []).append(name)
    if missing:
        packages = " ".join(sorted(missing))
        print(f"training.synth: no fonts for {', '.join(n for names in missing.values() for n in names)}; captions "
              f"are drawn in the other scripts (install Debian's {packages}: scripts/system-deps)", file=sys.stderr)
    return found


def pick_script(rng: np.random.Generator, allowed: tuple[str, ...] | None = None) -> Script:
    """A script drawn by ``SCRIPT_SHARES`` among the installed ones (of ``allowed`` if given; Latin, always
    installed, where none of them is)."""
    scripts = available_scripts()
    names = [n for n in scripts if allowed is None or n in allowed] or ["latin"]
    shares = np.array([SCRIPT_SHARES[n] for n in names])
    return scripts[names[int(rng.choice(len(names), p=shares / shares.sum()))]]


def breakable(word: str) -> bool:
    """A word whose line may break between any two characters: wide (CJK) characters only."""
    return all(unicodedata.east_asian_width(ch) in "WF" for ch in word)
