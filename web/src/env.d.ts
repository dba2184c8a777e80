// What Vite defines on import.meta for the client (the part we use, without Vite's Node types).
interface ImportMeta {
  readonly env: { readonly PROD: boolean; readonly DEV: boolean };
}
