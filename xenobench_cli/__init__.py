"""`xenobench`: command-line client of the XenoBench REST API (standard library only)."""
