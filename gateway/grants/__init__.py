"""Grants: approved applications that widen the default policy for one consumer and dataset."""
