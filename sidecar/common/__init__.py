"""Pieces both bridges share: settings plumbing, the envelope, the transactional producer,
ops endpoints."""
