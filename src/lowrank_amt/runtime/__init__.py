"""Where and how the code runs: the torch device (``device``), float kernels pinned for
reproducibility (``kernels``), memory measurement (``memory``), one run per results
folder (``run_lock``), software versions and provenance (``versions``) and atomic file
writes (``io``)."""
