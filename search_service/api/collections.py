import json

from flask import Blueprint, request, url_for

from search_service.api import int_arg, parse_body, services
from search_service.api.body import current_body
from search_service.api.schemas import MAX_PAGE, CollectionCreate, DocumentsCreate
from search_service.auth import visible_collections
from search_service.errors import InvalidRequestError
from search_service.identifiers import validate_document_id
from search_service.logs import request_id
from search_service.model_names import display_name
from search_service.store import collections as store
from search_service.store.jobs import create_job, job_to_dict, list_jobs
from search_service.store.models import JOB_STATES

bp = Blueprint("collections", __name__, url_prefix="/v1/collections")


def collection_to_dict(collection, documents: int, chunks: int) -> dict:
    return {
        "name": collection.name,
        "embedder_model": display_name(collection.embedder_model),  # stored as loaded; shown by name
        "dimension": collection.dimension,
        "chunk_tokens": collection.chunk_tokens,
        "chunk_overlap": collection.chunk_overlap,
        "documents": documents,
        "chunks": chunks,
        "created_at": collection.created_at.isoformat(),
    }


def document_to_dict(document, chunks=None) -> dict:
    body = {
        "document_id": document.external_id,
        "source": document.source,
        "content_hash": document.content_hash,
        "metadata": document.meta or {},
        "status": document.status,
        "created_at": document.created_at.isoformat(),
        "updated_at": document.updated_at.isoformat(),
    }
    if chunks is not None:
        body["chunks"] = [
            {
                "chunk_id": c.id,
                "ordinal": c.ordinal,
                "text": c.text,
                "start": c.char_start,
                "end": c.char_end,
                "token_count": c.token_count,
                "metadata": c.meta or {},
            }
            for c in chunks
        ]
    return body


@bp.post("")
def create():
    body = parse_body(CollectionCreate)
    svc = services()
    tokens, overlap = svc.ingestion.chunk_settings(body.chunk_tokens, body.chunk_overlap)
    with svc.database.session() as session:
        collection = store.create_collection(
            session,
            body.name,
            embedder_model=svc.embedder.model_id,
            dimension=svc.embedder.dimension,
            chunk_tokens=tokens,
            chunk_overlap=overlap,
        )
        payload = collection_to_dict(collection, 0, 0)
    return payload, 201, {"Location": url_for("collections.show", name=body.name)}


@bp.get("")
def index():
    visible = visible_collections()  # a key sees only its own collections
    with services().database.session() as session:
        rows = [row for row in store.list_collections(session) if visible is None or row[0].name in visible]
        return {"collections": [collection_to_dict(*row) for row in rows]}


@bp.get("/<name>")
def show(name: str):
    with services().database.session() as session:
        collection = store.get_collection(session, name)
        return collection_to_dict(collection, *store.collection_counts(session, collection))


@bp.get("/<name>/documents")
def documents(name: str):
    """The collection's documents; with `?id=` the one document (any stored id, even one the path
    form cannot carry, such as one starting with '/')."""
    if "id" in request.args:
        return document(name, request.args["id"])
    limit = int_arg("limit", 50, 1, MAX_PAGE)
    offset = int_arg("offset", 0, 0, 2**31)
    with services().database.session() as session:
        collection = store.get_collection(session, name)
        rows, total = store.list_documents(session, collection, limit=limit, offset=offset)
        return {
            "documents": [document_to_dict(d) for d in rows],
            "total": total,
            "limit": limit,
            "offset": offset,
        }


@bp.get("/<name>/documents/<path:document_id>")
def document(name: str, document_id: str):
    with services().database.session() as session:
        collection = store.get_collection(session, name)
        found = store.get_document(session, collection, document_id)
        return document_to_dict(found, chunks=found.chunks)


@bp.post("/<name>/documents")
def upload(name: str):
    """Queue documents for the worker: a multipart file upload or a JSON list of texts, into a
    collection that exists (404 `collection_not_found` otherwise; a typo never makes a new one)."""
    svc = services()
    store.validate_collection_name(name)
    if current_body().kind == "multipart":
        job_fields = _file_job_fields(current_body())
    else:
        body = parse_body(DocumentsCreate)
        for index, sent in enumerate(body.documents):
            validate_document_id(sent.id, f"documents[{index}].id")
        ids = [d.id for d in body.documents]
        if len(set(ids)) != len(ids):
            raise InvalidRequestError("document ids must be unique within one request", code="duplicate_document_id")
        payload = json.dumps([d.model_dump() for d in body.documents]).encode()
        job_fields = {"kind": "documents", "payload": payload}
    with svc.database.session() as session:
        collection = store.get_collection(session, name)  # 404: creating stays explicit (POST /v1/collections)
        svc.ingestion.check_compatible(collection)
        job = create_job(session, collection, request_id=request_id(), **job_fields)
        job_id, status = job.id, job.status
    location = url_for("jobs.show", job_id=job_id)
    return {"job_id": job_id, "status": status, "collection": name}, 202, {"Location": location}


def _file_job_fields(body) -> dict:
    upload = body.files.get("file")
    if upload is None or not upload.filename:
        raise InvalidRequestError("send the document as a multipart field named 'file'", code="missing_file")
    metadata = {} if body.metadata is None else body.metadata  # parsed and checked by the gate
    if not isinstance(metadata, dict):
        raise InvalidRequestError("'metadata' must be a JSON object", code="invalid_metadata")
    external_id = validate_document_id(body.form.get("id") or upload.filename,
                                       "id" if body.form.get("id") else "file.filename")
    try:
        payload = upload.read()
    finally:
        upload.close()  # large uploads are spooled to a temporary file
    return {
        "kind": "file",
        "payload": payload,
        "filename": upload.filename,
        "content_type": upload.mimetype,
        "external_id": external_id,
        "metadata": metadata,
    }


@bp.delete("/<name>")
def delete_collection(name: str):
    svc = services()
    with svc.database.session() as session:
        collection = store.get_collection(session, name)
        collection_id = collection.id
        store.delete_collection(session, collection)
    svc.indexes.forget(collection_id)
    return "", 204


@bp.delete("/<name>/documents/<path:document_id>")
def delete_document(name: str, document_id: str):
    svc = services()
    with svc.database.session() as session:
        store.delete_document(session, store.get_collection(session, name), document_id)
    return "", 204


@bp.delete("/<name>/documents")
def delete_document_query(name: str):
    """`DELETE .../documents?id=ID`: any stored id, even one the path form cannot carry."""
    if not request.args.get("id"):
        raise InvalidRequestError("name the document to delete: ?id=DOCUMENT_ID", code="missing_document_id")
    return delete_document(name, request.args["id"])


@bp.get("/<name>/jobs")
def jobs(name: str):
    limit = int_arg("limit", 50, 1, MAX_PAGE)
    offset = int_arg("offset", 0, 0, 2**31)
    status = request.args.get("status")
    if status is not None and status not in JOB_STATES:
        raise InvalidRequestError(f"status must be one of {', '.join(JOB_STATES)}", code="invalid_request")
    with services().database.session() as session:
        collection = store.get_collection(session, name)
        rows, total = list_jobs(session, collection, limit=limit, offset=offset, status=status)
        warn_s = services().settings.job_unclaimed_warn_s
        jobs = [job_to_dict(job, unclaimed_warn_s=warn_s) for job in rows]
        return {"jobs": jobs, "total": total, "limit": limit, "offset": offset}
