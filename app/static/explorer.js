// The musicsim explorer: plain JavaScript over the JSON API of the server that served it.
// The open song lives in the URL (#song/123), so the browser's back button walks back.
"use strict";

const PAGE = 20;
const $ = (id) => document.getElementById(id);
const state = { q: "", offset: 0, total: 0, song: null, posted: null, map: null, marks: [] };

// --- talking to the API --------------------------------------------------------------

function apiKey() {
  return sessionStorage.getItem("musicsim-api-key") || "";
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey()) headers.set("X-API-Key", apiKey());
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401 || response.status === 403) $("key-box").open = true;
    throw new Error(describeError(response.status, body));
  }
  return body;
}

function describeError(status, body) {
  const detail = body && body.detail;
  if (Array.isArray(detail)) {
    return detail.map((e) => `${e.loc.slice(1).join(".") || e.loc.join(".")}: ${e.msg}`).join("; ");
  }
  return detail ? String(detail) : `the server answered ${status}`;
}

function showMessage(text) {
  $("message").textContent = text || "";
  $("message").hidden = !text;
}

async function attempt(work) {
  showMessage("");
  try {
    await work();
  } catch (error) {
    showMessage(error.message);
  }
}

// --- building the page ---------------------------------------------------------------

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

// Real links: they open in a new tab, can be copied, and the hashchange handler loads them.
function songLink(song) {
  const label = `${song.title || "(untitled)"} — ${song.artist.name}`;
  return element("a", { class: "link", href: `#song/${song.id}`, "data-song-id": song.id }, label);
}

function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const total = Math.round(seconds);
  return `${Math.floor(total / 60)}:${String(total % 60).padStart(2, "0")}`;
}

// An <audio> player for a song that keeps its file (audio_url), else nothing.
function player(song) {
  if (!song.audio_url) return "";
  return element("audio", { controls: "", preload: "none", src: song.audio_url,
    "data-song-id": song.id });
}

// --- search --------------------------------------------------------------------------

async function search() {
  const params = new URLSearchParams({ limit: PAGE, offset: state.offset });
  if (state.q) params.set("q", state.q);
  const page = await api(`/songs?${params}`);
  state.total = page.total;
  const list = $("search-results");
  list.replaceChildren(...page.items.map((song) => element("li", {}, songLink(song))));
  list.start = page.offset + 1;
  const last = page.offset + page.items.length;
  $("search-summary").textContent = page.total
    ? `${page.offset + 1}–${last} of ${page.total} songs`
    : "no song matches";
  $("page-prev").disabled = page.offset === 0;
  $("page-next").disabled = last >= page.total;
}

// --- similar songs -------------------------------------------------------------------

function filterValues() {
  const values = { k: Number($("filter-k").value) || 10 };
  if ($("filter-genre").value) values.genre = $("filter-genre").value;
  const near = $("filter-near").value.trim();
  const radius = $("filter-radius").value.trim();
  if (near || radius) {
    values.near = near;
    values.radius_km = Number(radius);
  }
  return values;
}

function openSong(id) {
  const hash = `#song/${id}`;
  if (location.hash === hash) attempt(() => showSimilar(id));
  else location.hash = hash; // the hashchange handler loads it
}

async function showSimilar(id) {
  const filters = filterValues();
  const params = new URLSearchParams({ k: filters.k });
  if ($("filter-other-artists").checked) params.set("exclude_same_artist", "true");
  if (filters.genre) params.set("genre", filters.genre);
  if ("near" in filters) {
    params.set("near", filters.near);
    params.set("radius_km", filters.radius_km);
  }
  const answer = await api(`/songs/${id}/similar?${params}`);
  state.song = id;
  state.posted = null;
  const song = answer.query;
  $("query-title").textContent = `${song.title || "(untitled)"} — ${song.artist.name}`;
  const where = song.location ? `, ${song.location}` : "";
  const album = [
    song.album ? ` · album ${song.album}` : "",
    song.track_number ? ` · track ${song.track_number}` : "",
    song.album_artist ? ` · album artist ${song.album_artist}` : "",
  ].join("");
  const duration = song.duration ? ` · ${formatDuration(song.duration)}` : "";
  $("query-details").textContent =
    `song ${song.id} · ${song.genre || "no genre"}${album}${duration}${where}`;
  $("query-player").replaceChildren(player(song));
  showResults(answer.results, id);
}

async function showSimilarToPosted(posted) {
  const filters = filterValues();
  let answer;
  if (posted.kind === "features") {
    const body = { features: posted.features, ...filters };
    answer = await api("/songs/similar", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
  } else {
    const form = new FormData();
    form.set("file", posted.file);
    for (const [name, value] of Object.entries(filters)) form.set(name, value);
    if (posted.add) {
      form.set("add", "true");
      form.set("title", posted.file.name.replace(/\.[^.]+$/, ""));
      form.set("artist", posted.artist);
    }
    answer = await withProgress(`analysing ${posted.file.name}…`,
      () => api("/songs/audio", { method: "POST", body: form }));
    if (answer.id !== null && answer.id !== undefined) {
      location.hash = `#song/${answer.id}`; // stored: the address keeps it across reloads
      return;
    }
  }
  state.song = null;
  state.posted = posted;
  $("query-player").replaceChildren();
  $("query-title").textContent = posted.label;
  $("query-details").textContent = "not in the catalogue; neighbours from its features";
  showResults(answer.results, null);
}

// Shown while the server analyses an upload (tens of seconds for a long file).
async function withProgress(label, work) {
  $("upload-status").textContent = label;
  $("upload-progress").hidden = false;
  try {
    return await work();
  } finally {
    $("upload-progress").hidden = true;
  }
}

function showResults(results, queryId) {
  const rows = results.map((r, i) => element("tr", { "data-song-id": r.id },
    element("td", {}, String(i + 1)),
    element("td", {}, element("a", { class: "link", href: `#song/${r.id}` },
      r.title || "(untitled)")),
    element("td", {}, r.artist.name),
    element("td", {}, r.genre || ""),
    element("td", { class: "distance", "data-distance": r.distance }, r.distance.toFixed(4)),
    element("td", { class: "album" }, r.album || ""),
    element("td", { class: "duration" }, formatDuration(r.duration)),
    element("td", { class: "play" }, player(r))));
  if (!rows.length) rows.push(element("tr", {}, element("td", { colspan: 8 }, "no song passes the filters")));
  $("similar-results").replaceChildren(...rows);
  state.marks = [queryId, ...results.map((r) => r.id)];
  drawMap();
}

function refreshSimilar() {
  if (state.song !== null) return showSimilar(state.song);
  if (state.posted) return showSimilarToPosted(state.posted);
  throw new Error("choose a song first");
}

function parseFeatures(text) {
  const values = text.split(/[\s,]+/).filter(Boolean).map(Number);
  if (values.some((v) => !Number.isFinite(v))) throw new Error("features must all be numbers");
  return values;
}

// --- the map -------------------------------------------------------------------------

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
  "#3182bd"];

async function loadMap() {
  const map = await api("/songs/map");
  const genres = [...new Set(map.genres.filter(Boolean))].sort();
  const colour = new Map(genres.map((g, i) => [g, PALETTE[i % PALETTE.length]]));
  state.map = { ...map, colour };
  $("map-summary").textContent = `${map.ids.length} of ${map.n_songs} songs, on the first two `
    + "principal axes of their embeddings; click a point to open its song.";
  $("map-legend").replaceChildren(...genres.map((g) =>
    element("li", {}, element("span", { style: `background:${colour.get(g)}` }), g)));
  drawMap();
}

// Smallest and largest value (no spread: thousands of arguments can overflow the stack).
function extent(values) {
  return values.reduce(([lo, hi], v) => [Math.min(lo, v), Math.max(hi, v)], [Infinity, -Infinity]);
}

// Screen position of every map point, for the current canvas size.
function mapLayout() {
  const canvas = $("map");
  const { x, y } = state.map;
  const pad = 12;
  const [x0, x1] = extent(x);
  const [y0, y1] = extent(y);
  const sx = (canvas.clientWidth - 2 * pad) / (x1 - x0 || 1);
  const sy = (canvas.clientHeight - 2 * pad) / (y1 - y0 || 1);
  return x.map((xi, i) => [pad + (xi - x0) * sx, canvas.clientHeight - pad - (y[i] - y0) * sy]);
}

function drawMap() {
  if (!state.map) return;
  const canvas = $("map");
  const ratio = window.devicePixelRatio || 1;
  canvas.width = canvas.clientWidth * ratio;
  canvas.height = canvas.clientHeight * ratio;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, canvas.clientWidth, canvas.clientHeight);
  const points = mapLayout();
  state.map.points = points;
  points.forEach(([px, py], i) => {
    ctx.fillStyle = state.map.colour.get(state.map.genres[i]) || "#aaa";
    ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
  });
  const position = new Map(state.map.ids.map((id, i) => [id, points[i]]));
  state.marks.forEach((id, rank) => {
    if (!position.has(id)) return;
    const [px, py] = position.get(id);
    ctx.strokeStyle = rank === 0 ? "#000" : "#d62728";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(px, py, rank === 0 ? 7 : 4, 0, 2 * Math.PI);
    ctx.stroke();
  });
}

// The index of the map point nearest to a mouse event, within a few pixels, or -1.
function pointAt(event) {
  if (!state.map || !state.map.points) return -1;
  const box = $("map").getBoundingClientRect();
  const mx = event.clientX - box.left;
  const my = event.clientY - box.top;
  let best = -1;
  let bestDistance = 36; // 6 px, squared
  state.map.points.forEach(([px, py], i) => {
    const d = (px - mx) ** 2 + (py - my) ** 2;
    if (d < bestDistance) [best, bestDistance] = [i, d];
  });
  return best;
}

function showTip(event) {
  const i = pointAt(event);
  const tip = $("map-tip");
  tip.hidden = i < 0;
  if (i < 0) return;
  const [px, py] = state.map.points[i];
  tip.textContent = `${state.map.titles[i] || "(untitled)"} — ${state.map.artists[i]}`;
  tip.style.left = `${px + 8}px`;
  tip.style.top = `${py + 8}px`;
}

// --- wiring --------------------------------------------------------------------------

async function loadGenres() {
  const { genres } = await api("/genres");
  $("filter-genre").replaceChildren(element("option", { value: "" }, "any"),
    ...genres.map((g) => element("option", { value: g }, g)));
}

function routeFromHash() {
  const match = /^#song\/(\d+)$/.exec(location.hash);
  if (match) attempt(() => showSimilar(Number(match[1])));
}

function start() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("musicsim-api-key", $("api-key").value);
    $("key-box").open = false;
    attempt(async () => {
      await Promise.all([loadGenres(), search(), loadMap()]);
      routeFromHash();
    });
  });
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.q = $("search").value.trim();
    state.offset = 0;
    attempt(search);
  });
  $("page-prev").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - PAGE);
    attempt(search);
  });
  $("page-next").addEventListener("click", () => {
    state.offset += PAGE;
    attempt(search);
  });
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(refreshSimilar);
  });
  $("features-form").addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(() => showSimilarToPosted({
      kind: "features", features: parseFeatures($("features").value), label: "Pasted features",
    }));
  });
  $("upload-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const file = $("upload-file").files[0];
    const add = $("upload-add").checked;
    const artist = $("upload-artist").value.trim();
    if (add && !artist) {
      showMessage("give an artist to add the song to the catalogue");
      return;
    }
    attempt(() => showSimilarToPosted({
      kind: "audio", file, add, artist, label: `Uploaded: ${file.name}`,
    }));
  });
  $("map").addEventListener("mousemove", showTip);
  $("map").addEventListener("mouseleave", () => { $("map-tip").hidden = true; });
  $("map").addEventListener("click", (event) => {
    const i = pointAt(event);
    if (i >= 0) openSong(state.map.ids[i]);
  });
  window.addEventListener("hashchange", routeFromHash);
  window.addEventListener("resize", drawMap);
  attempt(async () => {
    await Promise.all([loadGenres(), search(), loadMap()]);
    routeFromHash();
  });
}

// For tests and the curious: where a song's point is drawn on the map, in page pixels.
window.musicsimExplorer = {
  mapPointOf(id) {
    const i = state.map ? state.map.ids.indexOf(id) : -1;
    if (i < 0 || !state.map.points) return null;
    const box = $("map").getBoundingClientRect();
    return { x: box.left + state.map.points[i][0], y: box.top + state.map.points[i][1] };
  },
};

start();
