-- Clearing (services/dashboard/clearing.py) reads a month's settlements by
-- settled_at and its reversals by reversed_at: without these, each month's
-- statement read every one-bill ever written. Few one-bills are reversed, so
-- the reversals' index holds only those (the month query's range on
-- reversed_at implies it is not null, so the planner uses it).
CREATE INDEX one_bills_settled_at ON one_bills (settled_at);
CREATE INDEX one_bills_reversed_at ON one_bills (reversed_at) WHERE reversed_at IS NOT NULL;
