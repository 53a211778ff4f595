"""A synthetic music catalogue in the Free Music Archive (FMA) metadata format.

The real FMA download cannot be reached from our machines, so the loader, training,
evaluation and the service are developed against this stand-in. It writes the same three
files as FMA's `fma_metadata/` release, with the same layouts, so every part of the system
reads it exactly as it would read FMA. Usage::

    from pathlib import Path
    import pandas as pd
    from training.data.synthetic.catalogue import write_demo_catalogue

    demo = write_demo_catalogue(out_dir=Path("data/demo"), seed=0)  # 10,000 tracks, ~3 s
    tracks = pd.read_csv(demo.out_dir / "tracks.csv", index_col=0, header=[0, 1])
    features = pd.read_csv(demo.out_dir / "features.csv", index_col=0, header=[0, 1, 2])
    genres = pd.read_csv(demo.out_dir / "genres.csv", index_col=0)

    # The FMA-sized benchmark (about 30 s, 1 GB of features.csv):
    write_demo_catalogue(out_dir=Path("data/fma-sized"), n_tracks=106_574, n_artists=16_341)

How the data is made, so that it behaves like music under the paper's protocol:
- FMA's 16 top-level genres with their real ids and skewed sizes; each artist has one main
  genre; tracks per artist are heavy-tailed, about half the artists single-track.
- Hidden latents per genre, per artist (near its genre's) and per track (near its
  artist's): a style that drives musical descriptors through a non-linearity, and an
  artist's "sound" (how bright, how full) that varies little between its tracks.
- Per-track recording nuisances unrelated to the artist (gain, lo-fi band limit, noise
  floor, dynamics) shift many columns at once; each song also has its own content (key,
  melody) that its artist's other songs do not share.
- Each of the 74 librosa series is simulated frame by frame in its physical units (Hz,
  dB, chroma energy in [0, 1], ...) and summarised by the 7 statistics, so the statistics
  relate as real ones do (min <= median <= max, kurtosis >= -2, heavy tails, ...).
- The spectral columns in Hz dwarf all others and carry much of the lo-fi nuisance, so
  raw L2 is dominated by a few nuisance-heavy columns; z-scoring helps a little, and a
  learned map that suppresses nuisances and weighs columns helps more. With the default
  size and seed 0 the paper's protocol gives mean AUC 0.80 (raw), 0.83 (z-scored) and
  about 0.92 for the paper's triplet network (paper, on real FMA: 0.800, 0.825, 0.900).
"""

# FMA's ratio of tracks to artists (106,574 / 16,341), small enough that the whole
# pipeline (generate, train, evaluate) runs in about a minute on two cores.
DEFAULT_TRACKS = 10_000
DEFAULT_ARTISTS = 1_530
