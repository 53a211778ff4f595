"""musicsim's offline pipeline: FMA data, triplet training, the paper's evaluation."""
