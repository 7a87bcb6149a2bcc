import { URLExt } from '@jupyterlab/coreutils';

import { ServerConnection } from '@jupyterlab/services';

/**
 * Call the server extension (nbdeploy.server).
 *
 * @param endPoint API REST end point for the extension, under /nbdeploy/
 * @param init Initial values for the request
 * @param serverSettings The server settings to use for the request
 * @returns The response body interpreted as JSON
 * @throws ServerConnection.NetworkError when the server cannot be reached,
 *   ServerConnection.ResponseError (with the server's `error` message) when it refuses
 */
export async function requestAPI<T>(
  endPoint = '',
  init: RequestInit = {},
  serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  // Make request to Jupyter API
  const requestUrl = URLExt.join(
    serverSettings.baseUrl,
    'nbdeploy', // our server extension's API namespace
    endPoint
  );

  let response: Response;
  try {
    response = await ServerConnection.makeRequest(
      requestUrl,
      init,
      serverSettings
    );
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }

  const text = await response.text();
  let data: unknown = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      console.log('Not a JSON response body.', response);
    }
  }

  if (!response.ok) {
    const body = data as { error?: string; message?: string } | string;
    const message =
      typeof body === 'string' ? body : (body.error ?? body.message);
    throw new ServerConnection.ResponseError(response, message || undefined);
  }

  return data as T;
}
