"""`python -m deepcluster.reproduce`: every published setting of both papers, N seeds."""
