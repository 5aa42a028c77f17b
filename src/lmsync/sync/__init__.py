"""The sync: the pure rules, the HR → LMS field mapping, and the engine that applies them."""
