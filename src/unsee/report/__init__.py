"""Reports people read: HTML pages over results and image grids."""
