// The venue pages' maps: every fence of the merchant, and one fence with its recent check-ins.
// Data comes from the page as JSON (geofences exactly as the API stores them).
const NEARBY_M = 600; // check-ins this close to the fence are kept in view

window.VenueMaps = {
  // A fence plus a dot at its middle: a 40 m circle is invisible at city zoom, the dot is not.
  overview(el, tileUrl, venues) {
    const map = ConsoleMap.create(el, tileUrl);
    const layers = [];
    for (const venue of venues) {
      const fence = ConsoleMap.fenceLayer(venue.geofence);
      const open = () => { window.location.href = `/dashboard/venues/${venue.id}`; };
      fence.addTo(map).bindTooltip(venue.name).on("click", open);
      const dot = L.circleMarker(fence.getBounds().getCenter(), { radius: 5, color: "#1f6feb", weight: 2, fillOpacity: 0.9 })
        .addTo(map).bindTooltip(venue.name).on("click", open);
      layers.push(fence, dot);
    }
    ConsoleMap.fit(map, layers, 17);
    return map;
  },

  // Check-ins as dots coloured by outcome (the legend beside the map uses the same colours),
  // each with its accuracy circle faintly around it.
  detail(el, tileUrl, data) {
    const map = ConsoleMap.create(el, tileUrl);
    const fence = ConsoleMap.fenceLayer(data.geofence).addTo(map);
    const middle = fence.getBounds().getCenter();
    const view = fence.getBounds();
    // Oldest first, accepted before rejected: the newest refusals end up on top, where they show.
    const order = (p) => (p.outcome === "accepted" ? 0 : 1);
    // Positions come to about 100 m (a cell's centre); retention removes old ones altogether.
    const points = data.points.filter((p) => p.lat !== null).reverse().sort((a, b) => order(a) - order(b));
    for (const p of points) {
      L.circle([p.lat, p.lon], { radius: p.accuracy_m, color: p.colour, weight: 1, opacity: 0.35, fillOpacity: 0.04, interactive: false })
        .addTo(map);
      L.circleMarker([p.lat, p.lon], { radius: 5, color: "#fff", weight: 1, fillColor: p.colour, fillOpacity: 0.95, className: "checkin-point" })
        .addTo(map)
        .bindTooltip(`${p.outcome.replaceAll("_", " ")} · ${p.customer} · ${p.local_time} · ` +
                     `${p.distance_to_fence_m ? `${p.distance_to_fence_m} m from the fence` : "inside"} · ±${Math.round(p.accuracy_m)} m`);
      if (middle.distanceTo([p.lat, p.lon]) < NEARBY_M) view.extend([p.lat, p.lon]);
    }
    // The fence and the check-ins around it decide the view: a spoofer 300 km away must not
    // shrink the venue to a dot (it is on the map all the same, further out).
    map.fitBounds(view.pad(0.2), { maxZoom: 18 });
    return map;
  },
};
