"""What a study's reader sees: the tidy summary and its tables (``summary``), the
equal-compute view (``equal_compute``) and the figures (``plots``)."""
