//! The builders of the batch endpoints, one per wire format.

use super::BatchLayer;
use crate::codec::bulk::BulkCodec;
use crate::codec::json::JsonCodec;
use crate::codec::multipart::MultipartCodec;
use crate::codec::resource::Resource;
use std::sync::Arc;

impl BatchLayer {
    /// Adds a batch endpoint at `path` that takes the JSON batch format (OData 4.01 /
    /// Microsoft Graph, `application/json`) and OData 4.0's multipart batch
    /// (`multipart/mixed`: changesets are atomicity groups), chosen by `content-type`; a
    /// request without one is read as JSON. Paths match exactly.
    ///
    /// # Panics
    ///
    /// As [`BatchLayer::new`], and when `path` already serves JSON.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.config_mut().add(path.clone(), Arc::new(JsonCodec));
        self.config_mut()
            .add(path, Arc::new(MultipartCodec::ODATA_4));
        self
    }

    /// Adds an OData V2 batch endpoint at `path` (`multipart/mixed`, as SAP Gateway and WCF
    /// Data Services serve `$batch`): the same format as [`path`](Self::path)'s multipart,
    /// answered `202 Accepted` with `DataServiceVersion: 2.0`, which V2 clients (SAP's
    /// `pyodata`, UI5's V2 model) require. Every request runs, as V2 has no rule to stop at
    /// a failure; a changeset that failed is answered with its failure alone.
    ///
    /// At a [`path`](Self::path) endpoint, a request that names `DataServiceVersion` or
    /// `MaxDataServiceVersion` (and no `OData-Version`) gets the same V2 answer; use this
    /// for clients that name no version (pyodata).
    ///
    /// ```
    /// use tower_http_batch::BatchLayer;
    ///
    /// let layer = BatchLayer::new("/odata/v4/$batch").odata_v2("/sap/opu/odata/demo/$batch");
    /// # let _ = layer;
    /// ```
    ///
    /// # Panics
    ///
    /// As [`BatchLayer::new`], and when `path` already takes multipart batches.
    pub fn odata_v2(mut self, path: impl Into<String>) -> Self {
        let codec = MultipartCodec::ODATA_V2;
        self.config_mut().add(path.into(), Arc::new(codec));
        self
    }

    /// Adds a bulk endpoint in SugarCRM's format (`POST /rest/v10/bulk`): `{"requests":
    /// [{"url", "method", "data", "headers"}]}` in, a bare array of `{"contents",
    /// "headers", "status"}` out. Sub-URLs start with the API version (`/v10/Accounts`) and
    /// resolve under `base` (`/rest`). Items run in order; a failure does not stop the rest.
    /// Every limit, validation and identity rule of the layer applies. The crate docs have
    /// a runnable example.
    ///
    /// # Panics
    ///
    /// As [`BatchLayer::path`].
    pub fn bulk(mut self, path: impl Into<String>, base: impl Into<String>) -> Self {
        let codec = BulkCodec::new(base);
        self.config_mut().add(path.into(), Arc::new(codec));
        self
    }

    /// Gives a collection bulk endpoints at `{path}/batch`, with no handler to
    /// write: `POST /users/batch` with `{"users": [...]}` creates each item with `POST
    /// /users`; `PATCH /users/batch` with `{"updates": [{"id": 42, ...}]}` sends `PATCH
    /// /users/42` with the rest of each item; `DELETE /users/batch` with `{"ids": [...]}`,
    /// or with `{"filters": {...}}` (read with `GET /users?filters` first), sends `DELETE
    /// /users/{id}` for each. A bare array works in place of the object.
    ///
    /// Replies carry per-item results: `success_count`, `error_count`, `created` or
    /// `succeeded`, `deleted_count`, `not_found_count` and `failed` (each with the
    /// handler's own message). The status is `201` (create) or `200` when every item
    /// succeeded, `207` when any failed. `"atomic": true` (or `?atomic=true`) runs all
    /// items in one transaction of the [`transactions`](Self::transactions) hook. See
    /// the README for every rule, and the crate docs for a runnable example.
    ///
    /// # Panics
    ///
    /// As [`Resource::new`].
    pub fn resource(mut self, resource: impl Into<Resource>) -> Self {
        let resource = resource.into();
        let path = format!("{}/batch", resource.path);
        self.config_mut().add(path, Arc::new(resource));
        self
    }
}
