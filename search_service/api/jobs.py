from flask import Blueprint

from search_service.api import services
from search_service.store.jobs import get_job, job_to_dict

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")


@bp.get("/<job_id>")
def show(job_id: str):
    svc = services()
    with svc.database.session() as session:
        return job_to_dict(get_job(session, job_id), unclaimed_warn_s=svc.settings.job_unclaimed_warn_s)
