"""Reports of a results document: the self-contained HTML matrix, its plots and its SVG charts."""
