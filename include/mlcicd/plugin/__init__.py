"""What the Airflow plugin (plugins/mlcicd_plugin.py) loads into the API server and the scheduler: the
report pages (:mod:`.webreports`) and the scheduler's resume-race guard (:mod:`.resume_race`)."""
