// Console maps: Leaflet on a plain background with a scale bar (no tile server needed);
// tiles are drawn underneath only when the service is configured with CHECKIN_MAP_TILE_URL.
window.ConsoleMap = {
  // el: a div with class "map"; tileUrl: "" or a {z}/{x}/{y} template.
  create(el, tileUrl) {
    const map = L.map(el, { attributionControl: Boolean(tileUrl), zoomSnap: 0.25 });
    if (tileUrl) L.tileLayer(tileUrl, { maxZoom: 20 }).addTo(map);
    L.control.scale({ imperial: false }).addTo(map);
    map.setView([0, 0], 2);
    return map;
  },
  // A venue's stored geofence (GeoJSON Polygon/MultiPolygon or our {"type": "Circle"}) as a layer.
  fenceLayer(geofence, style) {
    const s = Object.assign({ color: "#1f6feb", weight: 2, fillOpacity: 0.15 }, style || {});
    if (geofence.type === "Circle") {
      return L.circle([geofence.center[1], geofence.center[0]], Object.assign({ radius: geofence.radius_m }, s));
    }
    return L.geoJSON(geofence, { style: () => s });
  },
  fit(map, layers, maxZoom) {
    const group = L.featureGroup(layers.filter(Boolean));
    if (group.getLayers().length) map.fitBounds(group.getBounds().pad(0.3), { maxZoom: maxZoom || 18 });
  },
};
