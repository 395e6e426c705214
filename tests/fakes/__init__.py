"""Fake external services on loopback for tests of ftctl's real HTTP clients (Hugging Face Hub, CML)."""
