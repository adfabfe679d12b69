"""One widget per file; screens compose them."""
