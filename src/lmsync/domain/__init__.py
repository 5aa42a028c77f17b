"""The pure domain: input models, normalization rules and typed errors. No I/O, no ORM, no web."""
