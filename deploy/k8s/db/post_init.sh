#!/bin/sh
# Patroni's post_bootstrap, once, on the member that initialises the cluster: the
# role and database of transit, and TimescaleDB in it (the migrations expect it;
# creating it needs the superuser). $1 is Patroni's connection string.
set -eu
psql -v ON_ERROR_STOP=1 -v pw="$DB_PASSWORD" "$1" <<'SQL'
CREATE ROLE transit LOGIN PASSWORD :'pw';
CREATE DATABASE transit OWNER transit;
\connect transit
CREATE EXTENSION IF NOT EXISTS timescaledb;
SQL
