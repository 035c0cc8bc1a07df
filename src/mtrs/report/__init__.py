"""Reports: matplotlib figures (Agg, PNG) gathered into a self-contained HTML page."""
