"""flopcast's planning half: load result records, fit laws, model hardware, plan runs.

Nothing in this package imports torch or triton, so fitting and planning run on any laptop.
"""
