"""The defense: one Setting, the ASVP op and its hooks, the baselines and the output-KD bound."""
