"""MEG processing: BIDS reading, cleaning, epochs, source estimates and regions.

The stage is :mod:`mfrs.stages.meg`; MNE and its relatives are imported only
inside the functions that use them, so importing this package stays cheap.
"""
