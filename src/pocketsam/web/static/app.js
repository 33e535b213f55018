// pocketsam serve — the page. Plain JS, no build step.
//
// The server embeds each image once; this page decodes masks with the exported
// SAM-interface decoder (onnxruntime-web) or, when that is unavailable, asks the server
// (/api/images/{id}/decode), which runs the same decoder module in torch.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const COLORS = [[61, 139, 253], [255, 214, 0], [46, 204, 113], [255, 99, 71], [155, 89, 182],
    [26, 188, 156], [230, 126, 34], [236, 64, 122], [52, 152, 219], [205, 220, 57]];

  const S = {
    config: null,
    image: null,           // {id, name, width, height}
    embedding: null,       // ort.Tensor
    session: null,         // ort.InferenceSession
    mode: "server",        // "browser" | "server"
    prompts: { points: [], labels: [], box: null },
    current: null,         // {mask: Uint8Array (row-major), score}
    objects: [],           // {name, mask, score, color}
    history: [],
    pending: 0,            // uploads, clicks, everything in flight
    decodeSeq: 0,
    hover: { running: false, next: null, seq: 0 },
    drag: null,
    lastError: null,
    lastDecodeMs: null,
  };

  // ------------------------------------------------------------------ UI helpers
  function setStatus(text) { $("status").textContent = text; }
  function showError(message) {
    S.lastError = message;
    const el = $("error");
    el.textContent = message;
    el.hidden = false;
    clearTimeout(showError.timer);
    showError.timer = setTimeout(() => { el.hidden = true; }, 10000);
  }
  function clearError() { $("error").hidden = true; }
  function busy(delta) {
    S.pending += delta;
    document.body.dataset.busy = S.pending > 0 ? "1" : "0";
  }
  let progressTimer = null;
  function progress(fraction) {
    const el = $("progress");
    if (fraction === null) { el.hidden = true; clearInterval(progressTimer); return; }
    el.hidden = false;
    $("progress-bar").style.width = `${Math.round(100 * Math.min(1, fraction))}%`;
  }
  function progressEstimate(label, seconds) {  // an encoder run has no progress of its own
    const start = performance.now();
    clearInterval(progressTimer);
    progressTimer = setInterval(() => {
      const t = (performance.now() - start) / 1000;
      progress(0.5 + 0.45 * Math.min(1, t / Math.max(0.2, seconds)));
      setStatus(`${label} ${t.toFixed(1)} s (about ${seconds.toFixed(1)} s expected)`);
    }, 100);
  }
  function refreshButtons() {
    const ready = !!S.image && S.pending === 0;
    $("add").disabled = !ready || !S.current;
    $("undo").disabled = !ready || S.history.length === 0;
    $("clear").disabled = !ready || (S.objects.length === 0 && !S.current && !hasPrompts());
    $("everything").disabled = !ready;
    const any = S.objects.length > 0 || !!S.current;
    $("download-png").disabled = !ready || !any;
    $("download-coco").disabled = !ready || !any;
  }
  function hasPrompts() { return S.prompts.points.length > 0 || S.prompts.box !== null; }

  async function api(path, options = {}) {
    const response = await fetch(path, options);
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    return response;
  }

  // ------------------------------------------------------------------ masks & RLE
  // COCO compressed RLE string → run lengths (the LEB128-like format of pycocotools).
  function cocoCounts(s) {
    const counts = [];
    let p = 0;
    while (p < s.length) {
      let x = 0, k = 0, more = true;
      while (more) {
        const c = s.charCodeAt(p) - 48;
        x |= (c & 0x1f) << (5 * k);
        more = (c & 0x20) !== 0;
        p += 1; k += 1;
        if (!more && (c & 0x10)) x |= -1 << (5 * k);
      }
      if (counts.length > 2) x += counts[counts.length - 2];
      counts.push(x);
    }
    return counts;
  }
  // Column-major runs (zeros first) → row-major Uint8Array.
  function maskFromCounts(counts, width, height) {
    const mask = new Uint8Array(width * height);
    let pos = 0, value = 0;
    for (const run of counts) {
      if (value) {
        for (let i = pos; i < pos + run; i++) mask[(i % height) * width + Math.floor(i / height)] = 1;
      }
      pos += run;
      value ^= 1;
    }
    return mask;
  }
  function maskFromRle(rle) {
    const [height, width] = rle.size;
    return maskFromCounts(typeof rle.counts === "string" ? cocoCounts(rle.counts) : rle.counts, width, height);
  }
  // Row-major mask → uncompressed COCO RLE counts (column-major, zeros first).
  function countsFromMask(mask, width, height) {
    const counts = [];
    let current = 0, run = 0;
    for (let x = 0; x < width; x++) {
      for (let y = 0; y < height; y++) {
        const v = mask[y * width + x];
        if (v !== current) { counts.push(run); run = 0; current = v; }
        run += 1;
      }
    }
    counts.push(run);
    return counts;
  }
  function maskArea(mask) { let n = 0; for (let i = 0; i < mask.length; i++) n += mask[i]; return n; }

  // ------------------------------------------------------------------ decoding
  function resizedCoords(x, y) {  // ResizeLongestSide.apply_coords
    const { width, height } = S.image;
    const size = S.config.input_size;
    const scale = size / Math.max(width, height);
    const newW = Math.floor(width * scale + 0.5), newH = Math.floor(height * scale + 0.5);
    return [x * (newW / width), y * (newH / height)];
  }

  async function decodeBrowser(prompts) {
    const { width, height } = S.image;
    const coords = [], labels = [];
    prompts.points.forEach((p, i) => { coords.push(...resizedCoords(p[0], p[1])); labels.push(prompts.labels[i]); });
    if (prompts.box) {
      const [x0, y0, x1, y1] = prompts.box;
      coords.push(...resizedCoords(x0, y0), ...resizedCoords(x1, y1));
      labels.push(2, 3);
    } else {
      coords.push(0, 0);  // SAM's padding point
      labels.push(-1);
    }
    const n = labels.length;
    const [mh, mw] = S.config.low_res_mask_size;
    const feeds = {
      image_embeddings: S.embedding,
      point_coords: new ort.Tensor("float32", Float32Array.from(coords), [1, n, 2]),
      point_labels: new ort.Tensor("float32", Float32Array.from(labels), [1, n]),
      mask_input: new ort.Tensor("float32", new Float32Array(mh * mw), [1, 1, mh, mw]),
      has_mask_input: new ort.Tensor("float32", Float32Array.from([0]), [1]),
      orig_im_size: new ort.Tensor("float32", Float32Array.from([height, width]), [2]),
    };
    const out = await S.session.run(feeds);
    const logits = out.masks.data;
    const threshold = S.config.mask_threshold;
    const mask = new Uint8Array(width * height);
    for (let i = 0; i < mask.length; i++) mask[i] = logits[i] > threshold ? 1 : 0;
    return { mask, score: out.iou_predictions.data[0] };
  }

  async function decodeServer(prompts) {
    const response = await api(`/api/images/${S.image.id}/decode`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ points: prompts.points, labels: prompts.labels, box: prompts.box }),
    });
    const result = await response.json();
    return { mask: maskFromRle(result.segmentation), score: result.score };
  }

  function decode(prompts) {
    return S.mode === "browser" ? decodeBrowser(prompts) : decodeServer(prompts);
  }

  // ------------------------------------------------------------------ drawing
  function layer(id) { return $(id).getContext("2d"); }
  // Fill a mask into RGBA pixels, its outline (pixels with a 4-neighbour outside it) opaque.
  function fillMask(d, mask, color, alpha) {
    const { width, height } = S.image;
    for (let y = 0, i = 0; y < height; y++) {
      for (let x = 0; x < width; x++, i++) {
        if (!mask[i]) continue;
        const edge = x === 0 || y === 0 || x === width - 1 || y === height - 1 ||
          !mask[i - 1] || !mask[i + 1] || !mask[i - width] || !mask[i + width];
        const j = 4 * i;
        d[j] = color[0]; d[j + 1] = color[1]; d[j + 2] = color[2]; d[j + 3] = edge ? 255 : alpha;
      }
    }
  }
  function paintMask(ctx, mask, color, alpha) {
    const img = ctx.createImageData(S.image.width, S.image.height);
    fillMask(img.data, mask, color, alpha);
    ctx.putImageData(img, 0, 0);
  }
  function drawObjects() {
    const ctx = layer("objects-layer");
    const { width, height } = S.image;
    ctx.clearRect(0, 0, width, height);
    if (!S.objects.length) return;
    const img = ctx.createImageData(width, height);
    for (const obj of S.objects) fillMask(img.data, obj.mask, obj.color, 120);
    ctx.putImageData(img, 0, 0);
  }
  function drawCurrent() {
    const ctx = layer("current-layer");
    ctx.clearRect(0, 0, S.image.width, S.image.height);
    if (S.current) paintMask(ctx, S.current.mask, [30, 144, 255], 140);
  }
  function drawPreview(mask) {
    const ctx = layer("preview-layer");
    ctx.clearRect(0, 0, S.image.width, S.image.height);
    if (mask) paintMask(ctx, mask, [255, 255, 255], 90);
  }
  function drawPrompts() {
    const svg = $("prompt-layer");
    const rect = $("image-layer").getBoundingClientRect();
    const unit = S.image.width / Math.max(1, rect.width);  // image pixels per screen pixel
    let html = "";
    if (S.prompts.box) {
      const [x0, y0, x1, y1] = S.prompts.box;
      html += `<rect x="${x0}" y="${y0}" width="${x1 - x0}" height="${y1 - y0}" fill="none" stroke="#3d8bfd" stroke-width="${2 * unit}"/>`;
    }
    if (S.drag && S.drag.box) {
      const [x0, y0, x1, y1] = S.drag.box;
      html += `<rect x="${x0}" y="${y0}" width="${x1 - x0}" height="${y1 - y0}" fill="none" stroke="#fff" stroke-dasharray="${4 * unit}" stroke-width="${2 * unit}"/>`;
    }
    S.prompts.points.forEach((p, i) => {
      const color = S.prompts.labels[i] === 1 ? "#2ecc71" : "#e5484d";
      html += `<circle cx="${p[0] + 0.5}" cy="${p[1] + 0.5}" r="${6 * unit}" fill="${color}" stroke="#fff" stroke-width="${1.5 * unit}"/>`;
    });
    svg.innerHTML = html;
  }
  function renderList() {
    const list = $("objects");
    list.innerHTML = "";
    S.objects.forEach((obj, index) => {
      const li = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = `rgb(${obj.color.join(",")})`;
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = obj.name;
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = `${obj.area} px${obj.score !== null ? ` · ${obj.score.toFixed(2)}` : ""}`;
      const remove = document.createElement("button");
      remove.className = "remove";
      remove.textContent = "×";
      remove.title = "remove";
      remove.addEventListener("click", () => { snapshot(); S.objects.splice(index, 1); redrawAll(); });
      li.append(swatch, name, meta, remove);
      list.append(li);
    });
    $("count").textContent = String(S.objects.length);
  }
  function redrawAll() {
    drawObjects(); drawCurrent(); drawPreview(null); drawPrompts(); renderList(); refreshButtons();
  }

  // ------------------------------------------------------------------ history
  function snapshot() {
    S.history.push({
      prompts: { points: S.prompts.points.slice(), labels: S.prompts.labels.slice(), box: S.prompts.box },
      current: S.current, objects: S.objects.slice(),
    });
    if (S.history.length > 200) S.history.shift();
  }
  function undo() {
    const last = S.history.pop();
    if (!last) return;
    S.decodeSeq += 1;  // drop any decode in flight
    S.prompts = last.prompts; S.current = last.current; S.objects = last.objects;
    redrawAll();
  }
  function clearAll() {
    snapshot();
    S.decodeSeq += 1;
    S.prompts = { points: [], labels: [], box: null }; S.current = null; S.objects = [];
    redrawAll();
  }
  function addObject() {
    if (!S.current) return;
    snapshot();
    const color = COLORS[S.objects.length % COLORS.length];
    S.objects.push({ name: `object ${S.objects.length + 1}`, mask: S.current.mask, score: S.current.score,
      area: maskArea(S.current.mask), color });
    S.prompts = { points: [], labels: [], box: null }; S.current = null;
    redrawAll();
  }

  async function promptsChanged() {
    const seq = ++S.decodeSeq;
    drawPrompts();
    if (!hasPrompts() || (!S.prompts.box && !S.prompts.labels.includes(1))) {
      S.current = null; drawCurrent(); refreshButtons(); return;
    }
    const prompts = { points: S.prompts.points.slice(), labels: S.prompts.labels.slice(), box: S.prompts.box };
    busy(+1);
    try {
      const start = performance.now();
      const result = await decode(prompts);
      S.lastDecodeMs = performance.now() - start;
      $("decode-time").textContent = `Last mask: ${S.lastDecodeMs.toFixed(0)} ms (${S.mode === "browser" ? "in the browser" : "server round trip"}).`;
      if (seq === S.decodeSeq) { S.current = result; drawCurrent(); drawPreview(null); }
    } catch (err) {
      showError(`Decoding failed: ${err.message}`);
    } finally {
      busy(-1);
      refreshButtons();
    }
  }

  // ------------------------------------------------------------------ hover preview
  function schedulePreview(point) {
    S.hover.next = point;
    if (!S.hover.running) runPreview();
  }
  async function runPreview() {
    S.hover.running = true;
    while (S.hover.next) {
      const point = S.hover.next;
      S.hover.next = null;
      const seq = ++S.hover.seq;
      const prompts = {
        points: [...S.prompts.points, point], labels: [...S.prompts.labels, 1], box: S.prompts.box,
      };
      try {
        const result = await decode(prompts);
        if (seq === S.hover.seq && S.image && !S.drag) drawPreview(result.mask);
      } catch (err) { /* a preview is best effort; clicks report errors */ }
    }
    S.hover.running = false;
  }
  function stopPreview() { S.hover.next = null; S.hover.seq += 1; if (S.image) drawPreview(null); }

  // ------------------------------------------------------------------ pointer input
  function imagePoint(event) {
    const rect = $("image-layer").getBoundingClientRect();
    const x = Math.floor((event.clientX - rect.left) * S.image.width / rect.width);
    const y = Math.floor((event.clientY - rect.top) * S.image.height / rect.height);
    return [Math.min(S.image.width - 1, Math.max(0, x)), Math.min(S.image.height - 1, Math.max(0, y))];
  }
  function setupPointer() {
    const wrap = $("canvas-wrap");
    wrap.addEventListener("contextmenu", (e) => e.preventDefault());
    wrap.addEventListener("mousedown", (e) => {
      if (!S.image || (e.button !== 0 && e.button !== 2)) return;
      e.preventDefault();
      S.drag = { start: imagePoint(e), x: e.clientX, y: e.clientY, button: e.button,
        negative: e.button === 2 || e.shiftKey || e.ctrlKey || e.altKey || e.metaKey, box: null };
    });
    window.addEventListener("mousemove", (e) => {
      if (!S.image) return;
      if (S.drag) {
        const moved = Math.hypot(e.clientX - S.drag.x, e.clientY - S.drag.y) > 5;
        if (moved && S.drag.button === 0) {
          const [x0, y0] = S.drag.start, [x1, y1] = imagePoint(e);
          S.drag.box = [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1) + 1, Math.max(y0, y1) + 1];
          stopPreview();
          drawPrompts();
        }
        return;
      }
      if (e.target.closest && e.target.closest("#canvas-wrap") && S.pending === 0) schedulePreview(imagePoint(e));
    });
    window.addEventListener("mouseup", (e) => {
      if (!S.drag) return;
      const drag = S.drag;
      S.drag = null;
      snapshot();
      if (drag.box) {
        S.prompts.box = drag.box;
      } else {
        S.prompts.points.push(drag.start);
        S.prompts.labels.push(drag.negative ? 0 : 1);
      }
      stopPreview();
      promptsChanged();
    });
    wrap.addEventListener("mouseleave", () => stopPreview());
  }

  // ------------------------------------------------------------------ images
  function uploadWithProgress(file) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `/api/images?name=${encodeURIComponent(file.name || "image")}`);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) { progress(0.5 * e.loaded / e.total); setStatus(`Uploading ${Math.round(100 * e.loaded / e.total)} %`); }
      };
      xhr.upload.onload = () => progressEstimate("Computing the image embedding…", S.config.encoder_seconds);
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
        if (xhr.status === 200 && body) resolve(body);
        else reject(new Error((body && body.error) || `upload failed (${xhr.status})`));
      };
      xhr.onerror = () => reject(new Error("the server could not be reached"));
      xhr.send(file);
    });
  }

  async function imageBitmap(file, info) {
    try {
      const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
      if (bitmap.width === info.width && bitmap.height === info.height) return bitmap;
    } catch (e) { /* a format the browser cannot show: ask the server */ }
    const response = await api(`/api/images/${info.id}/image.png`);
    return createImageBitmap(await response.blob());
  }

  async function openFile(file) {
    if (!file) return;
    if (S.config && file.size > S.config.max_upload_bytes) {
      showError(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MiB; this server accepts at most ${(S.config.max_upload_bytes / 2 ** 20).toFixed(0)} MiB`);
      return;
    }
    clearError();
    busy(+1);
    refreshButtons();
    document.body.dataset.state = "loading";
    progress(0);
    setStatus(`Uploading ${file.name}…`);
    try {
      const info = await uploadWithProgress(file);
      progress(0.97);
      let embedding = null;
      if (S.mode === "browser") {
        setStatus("Fetching the embedding…");
        const response = await api(`/api/images/${info.id}/embedding`);
        const shape = response.headers.get("X-Embedding-Shape").split(",").map(Number);
        embedding = new ort.Tensor("float32", new Float32Array(await response.arrayBuffer()), shape);
      }
      const bitmap = await imageBitmap(file, info);
      showImage(info, bitmap, embedding);
      setStatus(`${info.name} — ${info.width}×${info.height}${info.cached ? " (embedding cached)" : `, embedded in ${info.seconds.toFixed(2)} s`}. Click to segment.`);
      document.body.dataset.state = "ready";
    } catch (err) {
      showError(`Could not open ${file.name}: ${err.message}`);
      setStatus(S.image ? `${S.image.name} — click to segment.` : "Open or drop an image.");
      document.body.dataset.state = S.image ? "ready" : "empty";
    } finally {
      progress(null);
      busy(-1);
      refreshButtons();
    }
  }

  function showImage(info, bitmap, embedding) {
    S.image = { id: info.id, name: info.name, width: info.width, height: info.height };
    S.embedding = embedding;
    S.prompts = { points: [], labels: [], box: null };
    S.current = null; S.objects = []; S.history = []; S.decodeSeq += 1;
    for (const id of ["image-layer", "objects-layer", "current-layer", "preview-layer"]) {
      $(id).width = info.width; $(id).height = info.height;
    }
    $("prompt-layer").setAttribute("viewBox", `0 0 ${info.width} ${info.height}`);
    layer("image-layer").drawImage(bitmap, 0, 0);
    $("drop-hint").hidden = true;
    $("canvas-wrap").hidden = false;
    fitImage();
    redrawAll();
  }

  function fitImage() {
    if (!S.image) return;
    const stage = $("stage").getBoundingClientRect();
    const scale = Math.min((stage.width - 24) / S.image.width, (stage.height - 24) / S.image.height, 4);
    const el = $("image-layer");
    el.style.width = `${Math.floor(S.image.width * scale)}px`;
    el.style.height = `${Math.floor(S.image.height * scale)}px`;
    drawPrompts();
  }

  // ------------------------------------------------------------------ everything & downloads
  async function everything() {
    if (!S.image) return;
    busy(+1); refreshButtons();
    const mode = S.config.everything_mode;
    setStatus(`Segmenting everything (${mode})…`);
    progress(0);
    // The server counts the prompts it has decoded; poll it while the run goes on.
    const id = S.image.id;
    let polling = true;
    const poll = async () => {
      while (polling) {
        await new Promise((resolve) => setTimeout(resolve, 400));
        if (!polling) break;
        try {
          const p = await (await api(`/api/images/${id}/everything/progress`)).json();
          if (!polling || !p.running) continue;
          progress(p.fraction);
          setStatus(`Segmenting everything (${mode}): ${p.done} of ${p.total} prompts decoded, ${p.seconds.toFixed(1)} s`);
        } catch (e) { /* a missed poll is harmless */ }
      }
    };
    poll();
    try {
      const response = await api(`/api/images/${id}/everything`, { method: "POST" });
      const result = await response.json();
      snapshot();
      for (const m of result.masks) {
        const mask = maskFromRle(m.segmentation);
        S.objects.push({ name: `object ${S.objects.length + 1}`, mask, score: m.score, area: m.area,
          color: COLORS[S.objects.length % COLORS.length] });
      }
      setStatus(`Everything (${result.mode}): ${result.masks.length} masks in ${result.seconds.toFixed(1)} s.`);
    } catch (err) {
      showError(`Everything failed: ${err.message}`);
    } finally {
      polling = false;
      progress(null); busy(-1); redrawAll();
    }
  }

  function exportObjects() {
    const list = S.objects.map((o) => ({ name: o.name, score: o.score, mask: o.mask }));
    if (S.current) list.push({ name: `object ${S.objects.length + 1}`, score: S.current.score, mask: S.current.mask });
    return list.map((o) => ({ name: o.name, score: o.score, counts: countsFromMask(o.mask, S.image.width, S.image.height) }));
  }

  async function download(format) {
    if (!S.image) return;
    busy(+1); refreshButtons();
    try {
      const response = await api(`/api/images/${S.image.id}/export?format=${format}`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ objects: exportObjects() }),
      });
      const blob = await response.blob();
      const match = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = match ? match[1] : (format === "coco" ? "coco.json" : "masks.zip");
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
    } catch (err) {
      showError(`Download failed: ${err.message}`);
    } finally {
      busy(-1); refreshButtons();
    }
  }

  // ------------------------------------------------------------------ start-up
  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src; s.onload = resolve; s.onerror = () => reject(new Error(`cannot load ${src}`));
      document.head.append(s);
    });
  }

  async function setupDecoder() {
    const info = $("decoder-info");
    const forced = new URLSearchParams(location.search).get("decoder") === "server";
    if (S.config.browser_decoder && !forced) {
      try {
        await loadScript("/static/vendor/ort/ort.wasm.min.js");
        ort.env.wasm.wasmPaths = "/static/vendor/ort/";
        S.session = await ort.InferenceSession.create(S.config.decoder_url, { executionProviders: ["wasm"] });
        S.mode = "browser";
        info.textContent = "Masks are decoded in this browser (onnxruntime-web); the server only computes embeddings.";
        return;
      } catch (err) {
        showError(`The browser decoder could not start (${err.message}); decoding on the server instead.`);
      }
    }
    S.mode = "server";
    $("server-decode").checked = true;
    $("server-decode").disabled = !S.session;
    info.textContent = forced ? "Masks are decoded on the server (?decoder=server)."
      : `Masks are decoded on the server: ${S.config.browser_decoder_unavailable || "the browser decoder is unavailable"}.`;
  }

  async function start() {
    try {
      S.config = await (await api("/api/config")).json();
    } catch (err) {
      showError(`The server did not answer: ${err.message}`);
      return;
    }
    $("model-info").textContent = `Model: ${S.config.model}, input ${S.config.input_size}². Uploads up to ${(S.config.max_upload_bytes / 2 ** 20).toFixed(0)} MiB.`;
    const note = $("model-note");
    note.hidden = !S.config.model_note;
    note.textContent = S.config.model_note ? `Note: ${S.config.model_note}.` : "";
    await setupDecoder();
    $("server-decode").addEventListener("change", async (e) => {
      if (e.target.checked || !S.session) { S.mode = "server"; return; }
      if (S.image && !S.embedding) {
        const response = await api(`/api/images/${S.image.id}/embedding`);
        const shape = response.headers.get("X-Embedding-Shape").split(",").map(Number);
        S.embedding = new ort.Tensor("float32", new Float32Array(await response.arrayBuffer()), shape);
      }
      S.mode = "browser";
    });
    $("file").addEventListener("change", (e) => { openFile(e.target.files[0]); e.target.value = ""; });
    const stage = $("stage");
    stage.addEventListener("dragover", (e) => { e.preventDefault(); stage.classList.add("dragover"); });
    stage.addEventListener("dragleave", () => stage.classList.remove("dragover"));
    stage.addEventListener("drop", (e) => {
      e.preventDefault(); stage.classList.remove("dragover");
      if (e.dataTransfer.files.length) openFile(e.dataTransfer.files[0]);
    });
    window.addEventListener("paste", (e) => {
      const item = [...(e.clipboardData || {}).items || []].find((i) => i.kind === "file");
      if (item) openFile(item.getAsFile());
    });
    $("add").addEventListener("click", addObject);
    $("undo").addEventListener("click", undo);
    $("clear").addEventListener("click", clearAll);
    $("everything").addEventListener("click", everything);
    $("download-png").addEventListener("click", () => download("png"));
    $("download-coco").addEventListener("click", () => download("coco"));
    window.addEventListener("keydown", (e) => {
      if (!S.image || S.pending) return;
      if (e.key === "Enter") { e.preventDefault(); addObject(); }
      else if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { e.preventDefault(); undo(); }
      else if (e.key === "Escape") { snapshot(); S.prompts = { points: [], labels: [], box: null }; S.current = null; redrawAll(); }
    });
    window.addEventListener("resize", fitImage);
    setupPointer();
    refreshButtons();
    document.body.dataset.ready = "1";
  }

  // For tests and scripting: read-only views of the page state.
  window.pocketsam = {
    idle: () => S.pending === 0,
    mode: () => S.mode,
    image: () => S.image && { ...S.image },
    prompts: () => JSON.parse(JSON.stringify(S.prompts)),
    objects: () => S.objects.map((o) => ({ name: o.name, area: o.area, score: o.score })),
    lastError: () => S.lastError,
    lastDecodeMs: () => S.lastDecodeMs,
    // the mask shown for the current object, as uncompressed COCO RLE counts (null if none)
    currentCounts: () => (S.current ? countsFromMask(S.current.mask, S.image.width, S.image.height) : null),
  };

  start();
})();
