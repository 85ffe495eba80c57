"""What the Airflow plugin (:mod:`.registration`, the package's ``airflow.plugins`` entry point) loads into the API server and the scheduler: the
report pages (:mod:`.webreports`) and the scheduler's resume-race guard (:mod:`.resume_race`)."""
