"""The attacker: distillation of quick students and the named attackers."""
