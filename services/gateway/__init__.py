"""The hospitals' HTTP front door (CONTRACT §8, §9): signed claims over HTTP,
answers only to their own hospital, and reconciliation (对账)."""
