"""Batch engines that run polyhead models: Ray Data (:mod:`polyhead.integrations.ray`)."""
