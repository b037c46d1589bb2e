// A page on another origin reading a cloudify function as a browser client does: the STAC
// catalog by fetch, root to collection to item, then the function's item of that dataset and
// its Zarr v3 asset with zarrita (the first step along the first dimension).
// Query: ?base=FUNCTION_URL&collection=ID&item=ID&array=NAME. Writes its findings as JSON into <pre id="out">.
import * as zarr from "zarrita";

async function json(url) {
  const r = await fetch(url).catch((e) => { throw new Error(`${url}: ${e}`); });
  if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
  return [await r.json(), r.headers.get("content-type")];
}

function link(doc, rel, at, title) {
  const l = doc.links.find((l) => l.rel === rel && (!title || l.title === title));
  if (!l) throw new Error(`no ${rel} link ${title || ""} in ${at}`);
  return new URL(l.href, at).href;
}

async function main() {
  const q = new URLSearchParams(location.search);
  const base = q.get("base");
  const root = `${base}/stac/catalog.json`;
  const [catalog, type] = await json(root);
  const collectionUrl = link(catalog, "child", root, q.get("collection"));
  const [collection] = await json(collectionUrl);
  const itemUrl = link(collection, "item", collectionUrl, q.get("item"));
  const [item] = await json(itemUrl);
  // The bucket's item names the function at its public URL; the function's own names the
  // host it was reached at.
  const [served, itemType] = await json(`${base}/datasets/${item.id}/stac`);
  const store = new zarr.FetchStore(served.assets.zarr3.href);
  const group = await zarr.open.v3(store, { kind: "group" });
  const array = await zarr.open.v3(group.resolve(q.get("array")), { kind: "array" });
  const first = await zarr.get(array, [0, null, null]);
  return {
    catalog: catalog.id,
    catalog_type: type,
    item: item.id,
    item_type: itemType,
    shape: array.shape,
    values: Array.from(first.data),
  };
}

const out = document.getElementById("out");
main()
  .then((found) => { out.textContent = JSON.stringify(found); })
  .catch((e) => { out.textContent = JSON.stringify({ error: String(e) }); })
  .finally(() => { out.dataset.done = "1"; });
