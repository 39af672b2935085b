"""One study: the session (open, run trials, conclude), forked workers, the study plots."""
