"""Number formats: precision policies, loss scaling, CPU half precision, FP16 SyncBN.

Nothing in this package knows about detection.
"""
