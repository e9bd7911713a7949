"""ASVP Lab: can a restoration model defend itself at runtime against distillation?"""
