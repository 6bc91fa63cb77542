# mtasts-host: one process, one worker; run several containers to scale.
#   docker build -t mtasts-host .
#   docker run -p 8080:8080 -v "$PWD/policies:/etc/mtasts-host:ro" --read-only mtasts-host
FROM python:3.12-slim AS build
WORKDIR /src
# Dependencies first, so that a source change does not reinstall them; psycopg too, for a
# reports store in PostgreSQL, which replicas share.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['postgresql']))" > requirements.txt \
    && pip install --no-cache-dir --prefix=/install -r requirements.txt
COPY README.md ./
COPY mtasts_host ./mtasts_host
RUN pip install --no-cache-dir --no-deps --prefix=/install .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MTASTS_HOST_CONFIG=/etc/mtasts-host/config.yaml \
    MTASTS_HOST_HOST=0.0.0.0 \
    MTASTS_HOST_PORT=8080
RUN groupadd --system --gid 10001 mtasts \
    && useradd --system --uid 10001 --gid mtasts --no-create-home --shell /usr/sbin/nologin mtasts \
    && install -d -o 10001 -g 10001 /var/lib/mtasts-host
COPY --from=build /install /usr/local
COPY config.example.yaml /etc/mtasts-host/config.yaml
# /var/lib/mtasts-host is for an SQLite reports store: the root filesystem may be read-only,
# so mount a volume there; a new named volume takes this directory's owner, user 10001.
USER 10001:10001
EXPOSE 8080
# On the socket or the address and port the MTASTS_HOST_* variables give the server, and
# never through a proxy, whatever http_proxy the container was given.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
    CMD ["python", "-m", "mtasts_host.health"]
ENTRYPOINT ["mtasts-host"]
CMD ["serve"]
