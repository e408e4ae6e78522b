"""Intake: a contributor's file from its drop folder (or the portal) to accepted records and
Spanish feedback: reading it in its own layout (profiles), checking it against the shared
contract, merging what is accepted, and saying row by row what was not."""
