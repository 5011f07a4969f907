"""Profiles of taskemit's worker (py-spy); see ``drain_profile``."""
