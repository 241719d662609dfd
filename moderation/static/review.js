// The item page's forensic tools: zoom and pan over the full-resolution image, the box tool for
// marking regions (sent with the label as fractions of the image), the keyboard for both, and the
// heartbeat that keeps the item's lock while the page is open. Served from /static under the pages'
// Content-Security-Policy (the <script> tag carries the page's nonce).
(() => {
  'use strict';
  const viewer = document.getElementById('viewer');
  if (!viewer) return;
  const stage = document.getElementById('stage');
  const img = document.getElementById('image');
  const layer = document.getElementById('regions-layer');
  const input = document.getElementById('regions-input'); // only on a moderator's page
  const list = document.getElementById('regions-list');
  const level = document.getElementById('zoom-level');
  const boxButton = document.getElementById('box-tool');
  const imageId = viewer.dataset.imageId;
  const csrf = viewer.dataset.csrf;
  const MAX_SCALE = 16;
  const MAX_REGIONS = 32;
  const MIN_BOX = 0.005; // of the image's side: a click is not a box

  let w = Number(viewer.dataset.width) || 1;
  let h = Number(viewer.dataset.height) || 1;
  let fit = 1;
  let scale = 1;
  let tx = 0;
  let ty = 0;
  let boxing = false;
  const regions = [];

  function apply() {
    stage.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`;
    stage.classList.toggle('pixels', scale >= 2); // past 200%, show each pixel as a square
    stage.style.setProperty('--inv', String(1 / scale));
    if (level) level.textContent = `${Math.round(scale * 100)}%`;
    viewer.dataset.scale = scale.toFixed(4);
  }

  // Centre the image when it is smaller than the viewer; otherwise never pull an edge inside.
  function clampPan() {
    const vw = viewer.clientWidth;
    const vh = viewer.clientHeight;
    const sw = w * scale;
    const sh = h * scale;
    tx = sw <= vw ? (vw - sw) / 2 : Math.min(0, Math.max(vw - sw, tx));
    ty = sh <= vh ? (vh - sh) / 2 : Math.min(0, Math.max(vh - sh, ty));
  }

  // The whole image in the viewer; a small one is enlarged to fill it (a thumbnail hides nothing).
  const fitScale = () => Math.min(viewer.clientWidth / w, viewer.clientHeight / h);

  function fitView() {
    fit = fitScale();
    scale = fit;
    clampPan();
    apply();
  }

  // Zoom by `factor`, keeping the image point under (cx, cy) (viewer pixels) where it is.
  function zoomAt(factor, cx, cy) {
    const next = Math.min(Math.max(MAX_SCALE, fit), Math.max(Math.min(fit, 1), scale * factor));
    const ix = (cx - tx) / scale;
    const iy = (cy - ty) / scale;
    scale = next;
    tx = cx - ix * scale;
    ty = cy - iy * scale;
    clampPan();
    apply();
  }

  function zoomTo(target) {
    zoomAt(target / scale, viewer.clientWidth / 2, viewer.clientHeight / 2);
  }

  // A pointer event's position as fractions of the image (clamped to it).
  function fraction(e) {
    const r = viewer.getBoundingClientRect();
    const fx = (e.clientX - r.left - tx) / scale / w;
    const fy = (e.clientY - r.top - ty) / scale / h;
    return [Math.min(1, Math.max(0, fx)), Math.min(1, Math.max(0, fy))];
  }

  function place(el, r) {
    el.style.left = `${r.x * 100}%`;
    el.style.top = `${r.y * 100}%`;
    el.style.width = `${r.w * 100}%`;
    el.style.height = `${r.h * 100}%`;
  }

  const round = (v) => Math.round(v * 10000) / 10000;

  function render() {
    if (!input) return;
    layer.querySelectorAll('.region.mine').forEach((el) => el.remove());
    list.replaceChildren();
    regions.forEach((r, i) => {
      const el = document.createElement('div');
      el.className = 'region mine';
      el.dataset.n = String(i + 1);
      place(el, r);
      layer.appendChild(el);
      const li = document.createElement('li');
      li.className = 'region-row';
      const pct = (v) => `${Math.round(v * 100)}%`;
      li.textContent = `Region ${i + 1}: x ${pct(r.x)}, y ${pct(r.y)}, ${pct(r.w)} × ${pct(r.h)} `;
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.textContent = 'remove';
      remove.addEventListener('click', () => { regions.splice(i, 1); render(); });
      li.appendChild(remove);
      list.appendChild(li);
    });
    if (!regions.length) {
      const li = document.createElement('li');
      li.className = 'muted';
      li.textContent = 'None. Press b (or Box) and drag on the image to mark a manipulated or synthesized region.';
      list.appendChild(li);
    }
    input.value = JSON.stringify(regions.map((r) => ({ x: round(r.x), y: round(r.y), w: round(r.w), h: round(r.h) })));
  }

  function setBoxing(on) {
    boxing = on && Boolean(input);
    viewer.classList.toggle('boxing', boxing);
    if (boxButton) boxButton.setAttribute('aria-pressed', String(boxing));
  }

  let drag = null;
  viewer.addEventListener('pointerdown', (e) => {
    if (e.button !== 0) return;
    e.preventDefault();
    viewer.setPointerCapture(e.pointerId);
    if (boxing && regions.length < MAX_REGIONS) {
      const [fx, fy] = fraction(e);
      const el = document.createElement('div');
      el.className = 'region mine draft';
      layer.appendChild(el);
      drag = { kind: 'box', fx, fy, el, r: { x: fx, y: fy, w: 0, h: 0 } };
      place(el, drag.r);
    } else {
      drag = { kind: 'pan', sx: e.clientX, sy: e.clientY, tx, ty };
      viewer.classList.add('panning');
    }
  });
  viewer.addEventListener('pointermove', (e) => {
    if (!drag) return;
    if (drag.kind === 'pan') {
      tx = drag.tx + e.clientX - drag.sx;
      ty = drag.ty + e.clientY - drag.sy;
      clampPan();
      apply();
      return;
    }
    const [fx, fy] = fraction(e);
    drag.r = {
      x: Math.min(fx, drag.fx), y: Math.min(fy, drag.fy), w: Math.abs(fx - drag.fx), h: Math.abs(fy - drag.fy),
    };
    place(drag.el, drag.r);
  });
  function endDrag() {
    if (drag && drag.kind === 'box') {
      drag.el.remove();
      if (drag.r.w >= MIN_BOX && drag.r.h >= MIN_BOX) regions.push(drag.r);
      render();
    }
    viewer.classList.remove('panning');
    drag = null;
  }
  viewer.addEventListener('pointerup', endDrag);
  viewer.addEventListener('pointercancel', endDrag);
  viewer.addEventListener('wheel', (e) => {
    e.preventDefault();
    const r = viewer.getBoundingClientRect();
    zoomAt(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - r.left, e.clientY - r.top);
  }, { passive: false });
  viewer.addEventListener('dblclick', (e) => {
    if (boxing) return;
    const r = viewer.getBoundingClientRect();
    zoomAt(2, e.clientX - r.left, e.clientY - r.top);
  });

  const buttons = {
    'zoom-in': () => zoomTo(scale * 1.5),
    'zoom-out': () => zoomTo(scale / 1.5),
    'zoom-fit': fitView,
    'zoom-1': () => zoomTo(1),
    'box-tool': () => setBoxing(!boxing),
  };
  Object.entries(buttons).forEach(([id, fn]) => {
    const b = document.getElementById(id);
    if (b) b.addEventListener('click', fn);
  });

  document.addEventListener('keydown', (e) => {
    if (e.target.closest('input, select, textarea') || e.ctrlKey || e.metaKey || e.altKey) return;
    const act = {
      '+': buttons['zoom-in'], '=': buttons['zoom-in'], '-': buttons['zoom-out'], 0: fitView, 1: buttons['zoom-1'],
      b: buttons['box-tool'],
      x: () => { regions.pop(); render(); },
      Escape: () => setBoxing(false),
      u: () => { const undo = document.getElementById('undo'); if (undo) undo.click(); },
    }[e.key];
    if (act) { e.preventDefault(); act(); }
  });

  function start() {
    w = img.naturalWidth || w;
    h = img.naturalHeight || h;
    stage.style.width = `${w}px`;
    stage.style.height = `${h}px`;
    fitView();
    viewer.dataset.ready = '1';
  }
  if (img.complete && img.naturalWidth) start(); else img.addEventListener('load', start);
  window.addEventListener('resize', () => {
    if (scale === fit) { fitView(); return; }
    fit = fitScale();
    clampPan();
    apply();
  });
  render();

  // The lock: renewed while the page is open, given back (this view's lease only) when it closes.
  const token = viewer.dataset.lockToken;
  if (viewer.dataset.lock === 'mine' && token) {
    const url = `/api/items/${imageId}/lock?token=${encodeURIComponent(token)}`;
    const send = (method, keepalive) => fetch(url, {
      method, keepalive, credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf },
    });
    const renew = async () => {
      try {
        const r = await send('POST', false);
        if (r.status === 409) {
          const body = await r.json();
          const banner = document.getElementById('lock-banner');
          banner.textContent = `${body.holder} has this item open now; your label would be refused.`;
          banner.hidden = false;
        }
      } catch (err) { /* offline: the next beat tries again; the lease outlives two misses */ }
    };
    setInterval(renew, Number(viewer.dataset.renewS || 30) * 1000);
    window.addEventListener('pagehide', () => { send('DELETE', true).catch(() => {}); });
  }
})();
