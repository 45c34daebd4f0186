"""Reconstruction engines: each runs on a shared ReconsState and reports to observers."""
