"""The data: FMA's files (fma.py, fetch.py), the 518 feature columns, the artist split
and z-score (split.py), and the synthetic demo catalogue in FMA's format (synthetic/).

Importing this package is cheap: the CLI reads the file names below for its help.
"""

# The three files of FMA's fma_metadata release that musicsim reads.
TRACKS_FILE = "tracks.csv"
FEATURES_FILE = "features.csv"
GENRES_FILE = "genres.csv"
