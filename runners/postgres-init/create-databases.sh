#!/usr/bin/env bash
# Runs once, when the postgres service starts on an empty data volume (the official image
# runs every script in /docker-entrypoint-initdb.d then). One server, two databases:
#   optuna  the Optuna storage every worker shares (sweep --storage postgresql://.../optuna)
#   mlflow  the MLflow tracking server's backend store
# Both are owned by POSTGRES_USER, the password user from .env.
set -euo pipefail

for database in optuna mlflow; do
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        --set db="$database" --set owner="$POSTGRES_USER" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\gexec
SQL
done
