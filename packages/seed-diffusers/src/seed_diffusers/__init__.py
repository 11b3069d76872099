"""Seed backbones from local diffusers pipelines."""
