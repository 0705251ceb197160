// A campaign's results page: the daily chart and the time-to-redeem curve (uPlot), and the map of
// the campaign's venues (Leaflet via ConsoleMap). Charts read their figures from the element's
// data-value, which is the stats JSON value itself (see templates/campaign.html).
(function () {
  "use strict";

  const COLOURS = { accepted: "#1f6feb", exposed: "#8250df", unlocks: "#bf8700", redemptions: "#1a7f37", rejected: "#cf222e" };
  const DAY_S = 86400;
  const data = JSON.parse(document.getElementById("campaign-data").textContent);

  function figure(el) {
    return JSON.parse(el.dataset.value);
  }

  function empty(el, text) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = text;
    el.appendChild(p);
  }

  function width(el) {
    return Math.max(280, el.clientWidth);
  }

  // Charts follow their container's width when the window is resized.
  const charts = [];
  window.addEventListener("resize", () => {
    for (const [chart, el, height] of charts) chart.setSize({ width: width(el), height });
  });

  function count(n) {
    return n == null ? "—" : Math.round(n).toLocaleString("en");
  }

  // Every UTC day from the first to the last with figures; days with no row are zero, not gaps.
  function dailySeries(rows) {
    const byDay = new Map(rows.map((r) => [Date.parse(r.day + "T00:00:00Z") / 1000, r]));
    const days = [...byDay.keys()].sort((a, b) => a - b);
    const xs = [];
    for (let t = days[0]; t <= days[days.length - 1]; t += DAY_S) xs.push(t);
    const pick = (f) => xs.map((t) => (byDay.has(t) ? f(byDay.get(t)) : 0));
    return [
      xs,
      pick((r) => r.checkins_accepted),
      pick((r) => r.exposed_treatment + r.exposed_control),
      pick((r) => r.unlocks),
      pick((r) => r.redemptions),
      pick((r) => r.checkins_rejected),
    ];
  }

  function dailyChart() {
    const el = document.getElementById("daily-chart");
    const rows = figure(el);
    if (!rows.length) return empty(el, "No activity yet.");
    const series = (label, stroke, dash) => ({
      label, stroke, width: 2, dash, value: (u, v) => count(v), points: { show: true, size: 5, fill: stroke },
    });
    const height = 280;
    const points = dailySeries(rows);
    const [first, last] = [points[0][0], points[0][points[0].length - 1]];
    const chart = new uPlot(
      {
        width: width(el),
        height,
        legend: { live: false },
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        scales: {
          // The days themselves, with half a day either side: uPlot would stretch a single day over years.
          x: { time: true, range: () => [first - DAY_S / 2, last + DAY_S / 2] },
          y: { range: (u, min, max) => [0, Math.max(4, Math.ceil(max * 1.1))] },
        },
        series: [
          { label: "Day (UTC)", value: (u, ts) => (ts == null ? "—" : new Date(ts * 1000).toISOString().slice(0, 10)) },
          series("Accepted check-ins", COLOURS.accepted),
          series("Newly exposed users", COLOURS.exposed),
          series("Unlocks", COLOURS.unlocks),
          series("Redemptions", COLOURS.redemptions),
          series("Rejected check-ins", COLOURS.rejected, [4, 4]),
        ],
        axes: [
          { space: 60, incrs: [1, 2, 7, 14, 28, 91].map((d) => d * DAY_S), values: (u, ticks) => ticks.map((t) => new Date(t * 1000).toLocaleDateString("en-GB", { day: "numeric", month: "short", timeZone: "UTC" })) },
          { label: "per day", size: 60, values: (u, ticks) => ticks.map(count) },
        ],
      },
      points,
      el,
    );
    charts.push([chart, el, height]);
  }

  function minutesLabel(m) {
    if (m < 120) return Math.round(m) + " min";
    if (m < 2880) return +(m / 60).toFixed(1) + " h";
    return +(m / 1440).toFixed(1) + " d";
  }

  // Kaplan-Meier: a step that starts at 0% when the code is unlocked and rises at each redemption.
  function redeemChart() {
    const el = document.getElementById("redeem-chart");
    const curve = figure(el);
    if (!curve.length) return empty(el, "No redemptions yet.");
    const xs = [0, ...curve.map((p) => p.minutes)];
    const ys = [0, ...curve.map((p) => p.redeemed_share * 100)];
    const marks = [data.median, data.p75].filter((m) => m != null);
    const height = 240;
    const chart = new uPlot(
      {
        width: width(el),
        height,
        legend: { show: false },
        // Out to the longest redemption window: how long a code could take, whatever happened so far.
        scales: { x: { time: false, range: (u, min, max) => [0, Math.max(data.horizon_minutes, max, 1)] }, y: { range: [0, 100] } },
        series: [
          { label: "After", value: (u, v) => (v == null ? "—" : minutesLabel(v)) },
          {
            label: "Redeemed",
            stroke: COLOURS.redemptions,
            fill: "rgba(26, 127, 55, 0.08)",
            width: 2,
            paths: uPlot.paths.stepped({ align: 1 }),
            value: (u, v) => (v == null ? "—" : v.toFixed(1) + "% of unlocks"),
          },
        ],
        axes: [
          { label: "time after unlock", values: (u, ticks) => ticks.map(minutesLabel) },
          { label: "% of unlocks redeemed", size: 56, values: (u, ticks) => ticks.map((t) => t + "%") },
        ],
        hooks: {
          // Dashed lines at 50% and 75%: where they meet the curve are the median and p75 shown above.
          draw: [
            (u) => {
              const ctx = u.ctx;
              ctx.save();
              ctx.setLineDash([4, 4]);
              ctx.strokeStyle = "#8c959f";
              ctx.lineWidth = 1;
              for (const share of [50, 75]) {
                const y = u.valToPos(share, "y", true);
                ctx.beginPath();
                ctx.moveTo(u.bbox.left, y);
                ctx.lineTo(u.bbox.left + u.bbox.width, y);
                ctx.stroke();
              }
              for (const m of marks) {
                const x = u.valToPos(m, "x", true);
                ctx.beginPath();
                ctx.moveTo(x, u.bbox.top);
                ctx.lineTo(x, u.bbox.top + u.bbox.height);
                ctx.stroke();
              }
              ctx.restore();
            },
          ],
        },
      },
      [xs, ys],
      el,
    );
    charts.push([chart, el, height]);
  }

  function tag(path, value, text) {
    const span = document.createElement("span");
    span.className = "fig";
    span.dataset.metric = path;
    span.dataset.value = JSON.stringify(value);
    span.textContent = text;
    return span;
  }

  // The label of a venue on the map: its name and what happened there, tagged like the table.
  function venueLabel(venue, index) {
    const box = document.createElement("div");
    box.className = "venue-label";
    const name = document.createElement("strong");
    name.textContent = venue.name + (venue.deleted ? " (deleted)" : "");
    box.appendChild(name);
    box.appendChild(document.createElement("br"));
    const f = venue.figures;
    if (f == null) {
      box.appendChild(document.createTextNode("no check-ins yet"));
      return box;
    }
    const base = "by_venue." + index + ".";
    box.appendChild(tag(base + "checkins_accepted", f.checkins_accepted, count(f.checkins_accepted)));
    box.appendChild(document.createTextNode(" check-ins · "));
    box.appendChild(tag(base + "redemptions", f.redemptions, count(f.redemptions)));
    box.appendChild(document.createTextNode(" redeemed"));
    return box;
  }

  function venueMap() {
    const el = document.getElementById("venue-map");
    const map = ConsoleMap.create(el, data.tile_url);
    const layers = data.venues.map((venue) => {
      const layer = ConsoleMap.fenceLayer(venue.geofence, venue.deleted ? { color: "#8c959f", dashArray: "4 4" } : null);
      layer.bindTooltip(venueLabel(venue, venue.row), { permanent: true, direction: "top", className: "venue-tooltip" });
      return layer.addTo(map);
    });
    ConsoleMap.fit(map, layers, 18);
  }

  dailyChart();
  redeemChart();
  venueMap();
})();
