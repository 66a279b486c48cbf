/** Types of layers.js (plain JavaScript, so that eslint.config.js loads it without a build). */
export declare const LAYERS: readonly string[];
export declare function layerOf(file: string, srcDir: string): string | null;
export declare const layersPlugin: { readonly rules: Record<string, unknown> };
