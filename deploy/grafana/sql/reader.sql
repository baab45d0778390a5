-- Grafana's database user: it reads the one-bills' figures and nothing else.
-- Run by compose's grafana-reader job once the settlement service has created
-- its tables (psql -v reader_password=... -f reader.sql); safe to run again.
-- No person's identity (person_id) and no document (body) is readable, no
-- other schema, and no write of any kind: the grants below are all it has,
-- and its sessions are read-only.
SELECT set_config('medsettle.reader_password', :'reader_password', false);

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grafana_reader') THEN
        EXECUTE format('CREATE ROLE grafana_reader LOGIN PASSWORD %L NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT',
                       current_setting('medsettle.reader_password'));
    ELSE
        EXECUTE format('ALTER ROLE grafana_reader LOGIN PASSWORD %L NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT',
                       current_setting('medsettle.reader_password'));
    END IF;
END
$$;

ALTER ROLE grafana_reader SET default_transaction_read_only = on;
REVOKE ALL ON SCHEMA public FROM grafana_reader;
GRANT USAGE ON SCHEMA settlement TO grafana_reader;
REVOKE ALL ON ALL TABLES IN SCHEMA settlement FROM grafana_reader;
GRANT SELECT (claim_id, hospital_code, hospital_level, policy, visit_type, service_date, status, total, self_pay,
              over_limit_self_pay, pre_self_pay, compliant, deductible, basic, serious_illness, assistance,
              backstop, fund_total, personal, received_at, settled_at, reversed_at)
    ON settlement.one_bills TO grafana_reader;
