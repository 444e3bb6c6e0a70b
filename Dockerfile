# The one image of every Airflow service in docker-compose.yaml (and of the demo emulator).
# The pinned dependencies are baked in at build time, never installed at start (_PIP_ADDITIONAL_REQUIREMENTS).
#
#   docker compose build            # or: docker build -t leadsquared-airflow:3.3.2 .
FROM apache/airflow:3.3.2-python3.11

# Direct dependencies pinned by requirements.txt, every other version by constraints.txt (our tested set).
# A MySQL/MariaDB warehouse needs no more: the official image already ships the MySQL provider and mysqlclient
# (requirements-mysql.txt is for installs outside it, where pip must compile the driver).
COPY --chown=airflow:root requirements.txt constraints.txt /opt/airflow/requirements/
RUN pip install --no-cache-dir -r /opt/airflow/requirements/requirements.txt \
        -c /opt/airflow/requirements/constraints.txt

# The provider (hook, operator, connection type `leadsquared` through its apache_airflow_provider entry point).
# Installed in editable mode from /opt/airflow/plugins, so the plugins/ folder that docker-compose.yaml mounts
# there is the code that runs; without the mount the copy below runs.
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/
RUN pip install --no-cache-dir --no-deps --editable /opt/airflow/plugins

# The DAG, its SQL, the pool file, the emulator and the demo data: the image runs without the mounts too.
COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root include/ /opt/airflow/include/

# Mount points of docker-compose.yaml's named volumes: a new volume takes this owner (airflow, group root,
# group-writable for any AIRFLOW_UID with group 0), so no service needs to run as root.
RUN mkdir -p /opt/airflow/auth /opt/airflow/demo /opt/airflow/logs \
    && chmod 2775 /opt/airflow/auth /opt/airflow/demo /opt/airflow/logs
