"""Pieces both bridges share: the envelope, the transactional producer, ops endpoints."""
