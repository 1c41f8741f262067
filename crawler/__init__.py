"""Scrapy project: fetch meme images from the LoC web archive and imgur.

Spiders only parse; behaviour lives in settings, middlewares and pipelines.
"""
