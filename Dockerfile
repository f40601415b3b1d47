# Builds the one `sluice` binary; the compose file runs it as each tier.
FROM rust:1-bookworm AS build
WORKDIR /src
# The orchestrator's SQL parser (libpg_query, through the pg_query crate)
# generates its bindings with bindgen, which needs libclang.
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . .
# apalis-postgres' queries are checked from its offline data, not a database.
ENV SQLX_OFFLINE=true
RUN cargo build --release --bin sluice

FROM debian:bookworm-slim
# The database tools backups and restores run on the worker's host
# (`local` servers): pg_dump/pg_restore/psql and mariadb-dump/mariadb.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
        postgresql-client mariadb-client \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
ENV SLUICE_ADDR=0.0.0.0:8080 MIMALLOC_ARENA_EAGER_COMMIT=0
EXPOSE 8080
ENTRYPOINT ["sluice"]
CMD ["all"]
