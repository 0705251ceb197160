// The venue form's map: draw a circle, polygon or rectangle with Leaflet-Geoman, or paste GeoJSON
// into the textarea; either way the other follows. The textarea is what the form submits, in the
// API's own format (GeoJSON Polygon/MultiPolygon or {"type": "Circle", "center", "radius_m"}).
// Every change is checked by the server with the same validation as saving (POST /v1/venues), and
// a refused fence is drawn red with the problem pinned where it is.
window.VenueEditor = {
  start(opts) {
    const { mapEl, textarea, status, tileUrl, checkUrl, csrfToken, data } = opts;
    const map = ConsoleMap.create(mapEl, tileUrl);
    const OK_STYLE = { color: "#1f6feb", weight: 2, fillOpacity: 0.15 };
    const BAD_STYLE = { color: "#cf222e", weight: 3, fillOpacity: 0.12 };
    let fence = null; // the one editable layer
    let pin = null; // where the current error is
    let checking = null; // AbortController of the running check

    const round = (x, digits) => Math.round(x * 10 ** digits) / 10 ** digits;

    // Context: the merchant's other venues, never editable or snapped to.
    const context = (data.context || []).map((v) => {
      const layer = toLayer(v.geofence, { color: "#6e7781", weight: 1, dashArray: "4 4", fillOpacity: 0.05, pmIgnore: true, interactive: true });
      if (layer) layer.addTo(map).bindTooltip(v.name);
      return layer;
    }).filter(Boolean);

    // A stored or pasted geofence as a Leaflet layer Geoman can edit; null when it cannot be drawn.
    function toLayer(geofence, style) {
      const flip = (ring) => ring.map(([lon, lat]) => [lat, lon]);
      const opened = (ring) => {
        const first = ring[0], last = ring[ring.length - 1];
        const closed = ring.length > 1 && first[0] === last[0] && first[1] === last[1];
        return flip(closed ? ring.slice(0, -1) : ring);
      };
      try {
        if (geofence.type === "Circle") {
          return L.circle([geofence.center[1], geofence.center[0]], Object.assign({ radius: geofence.radius_m }, style));
        }
        if (geofence.type === "Polygon") return L.polygon(geofence.coordinates.map(opened), style);
        if (geofence.type === "MultiPolygon") return L.polygon(geofence.coordinates.map((p) => p.map(opened)), style);
      } catch (e) {
        return null; // malformed coordinates: the server's check says what is wrong
      }
      return null;
    }

    // The layer in the API's format.
    function toGeofence(layer) {
      if (layer instanceof L.Circle) {
        const c = layer.getLatLng();
        return { type: "Circle", center: [round(c.lng, 7), round(c.lat, 7)], radius_m: round(layer.getRadius(), 1) };
      }
      return layer.toGeoJSON(7).geometry;
    }

    function setFence(layer, { fit } = {}) {
      if (fence) map.removeLayer(fence);
      fence = layer;
      if (!fence) return;
      fence.addTo(map);
      fence.pm.enable({ allowSelfIntersection: true, draggable: true });
      fence.on("pm:edit pm:dragend", () => fromMap());
      if (fit) ConsoleMap.fit(map, [fence], 18);
    }

    // Map -> textarea (then checked).
    function fromMap() {
      textarea.value = fence ? JSON.stringify(toGeofence(fence)) : "";
      check();
    }

    // Textarea -> map (then checked).
    function fromText() {
      let parsed = null;
      try { parsed = JSON.parse(textarea.value); } catch (e) { /* reported by the check */ }
      const layer = parsed && typeof parsed === "object" ? toLayer(parsed, OK_STYLE) : null;
      if (layer) setFence(layer, { fit: true });
      check();
    }

    function clearError() {
      if (pin) { map.removeLayer(pin); pin = null; }
      if (fence) fence.setStyle(OK_STYLE);
      textarea.removeAttribute("aria-invalid");
    }

    function showError(error) {
      clearError();
      status.className = "field-error";
      status.replaceChildren();
      const field = document.createElement("code");
      field.textContent = error.field;
      status.append(field, ` (${error.code}): ${error.message}`);
      textarea.setAttribute("aria-invalid", "true");
      if (fence) fence.setStyle(BAD_STYLE);
      if (error.location) {
        const [lon, lat] = error.location;
        pin = L.circleMarker([lat, lon], { radius: 9, color: "#cf222e", weight: 3, fillColor: "#fff", fillOpacity: 0.9, pmIgnore: true, className: "fence-error-pin" })
          .addTo(map)
          .bindTooltip(pinLabel(error.message), { permanent: true, direction: "right", offset: [12, 0], className: "fence-error-tip" });
      }
    }

    // The pin says what, briefly; the full message (with the field path) is next to the textarea.
    // "geofence.coordinates is not a valid polygon: Self-intersection[10.75 59.91]" -> "Self-intersection".
    function pinLabel(message) {
      return message.replace(/^geofence[\w.]* is not a valid polygon: /, "").replace(/\[-?[\d.e+-]+ -?[\d.e+-]+\]$/, "");
    }

    function showOk(summary) {
      clearError();
      status.className = "muted";
      status.textContent = `${summary}: the API accepts this fence.`;
    }

    async function check() {
      if (!textarea.value.trim()) {
        clearError();
        status.className = "muted";
        status.textContent = "No fence yet: draw one on the map or paste GeoJSON.";
        return;
      }
      if (checking) checking.abort();
      checking = new AbortController();
      try {
        const r = await fetch(checkUrl, {
          method: "POST",
          headers: { "X-CSRF-Token": csrfToken },
          body: new URLSearchParams({ geofence: textarea.value }),
          signal: checking.signal,
        });
        if (!r.ok) return; // a signed-out session or a refused token: saving will say so
        const answer = await r.json();
        if (answer.ok) showOk(answer.summary); else showError(answer.error);
      } catch (e) {
        if (e.name !== "AbortError") throw e;
      }
    }

    // Geoman: draw circles, polygons and rectangles; the fence is edited in place (handles stay on).
    map.pm.addControls({
      position: "topleft",
      drawMarker: false, drawCircleMarker: false, drawPolyline: false, drawText: false,
      cutPolygon: false, rotateMode: false, editMode: false, dragMode: false,
      drawCircle: true, drawPolygon: true, drawRectangle: true, removalMode: true,
    });
    map.pm.setGlobalOptions({ snappable: false, allowSelfIntersection: true });
    map.on("pm:create", (e) => { setFence(e.layer); fromMap(); });
    map.on("pm:remove", (e) => { if (e.layer === fence) { fence = null; fromMap(); } });

    let typing = null;
    textarea.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(fromText, 400); });

    const gotoInput = document.getElementById("goto");
    const go = () => {
      const m = gotoInput.value.match(/^\s*(-?\d+(?:\.\d+)?)\s*[, ]\s*(-?\d+(?:\.\d+)?)\s*$/);
      if (m && Math.abs(+m[1]) <= 90 && Math.abs(+m[2]) <= 180) {
        gotoInput.removeAttribute("aria-invalid");
        map.setView([+m[1], +m[2]], 17);
      } else {
        gotoInput.setAttribute("aria-invalid", "true");
      }
    };
    document.getElementById("goto-button").addEventListener("click", go);
    gotoInput.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); go(); } });

    // Start: the form's fence (as submitted, when it was refused), else the other venues, else the world.
    let initial = null;
    try { initial = JSON.parse(textarea.value); } catch (e) { /* shown by the server's error */ }
    if (initial && typeof initial === "object") setFence(toLayer(initial, OK_STYLE));
    if (fence) ConsoleMap.fit(map, [fence], 18);
    else if (context.length) ConsoleMap.fit(map, context, 16);
    if (data.error) showError(data.error);
    else if (textarea.value.trim()) check();

    return { map, setFence: (geofence) => { setFence(toLayer(geofence, OK_STYLE), { fit: true }); fromMap(); }, value: () => textarea.value };
  },
};
