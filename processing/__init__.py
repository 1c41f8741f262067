"""Turn crawled memes and tiny non-meme pictures into one HDF5 dataset.

The package reads like the pipeline it implements:
``sources`` (what to read) -> ``decode`` (bytes to RGB) -> ``transform``
(RGB to a 128x128 tensor) -> ``writer`` (append to HDF5), orchestrated by
``build_h5``. Failures travel as data: every input ends in the file or under a
machine-readable reason (see ``reasons``).
"""

__version__ = "0.1.0"
