"""Where a trial gets its data: loading, splitting, tokenizing, prepared data for workers, synthetic data, WordPiece."""
